#!/bin/bash
# Builds the guest kernel from Debian's linux-source-6.1 plus kernel/kata-go.config.
# The result is cached under $KATA_GO_CACHE keyed by a hash of every input, so a
# second run (or a fresh clone on the same machine) only copies files.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# Absolute: the build below runs in another directory.
out=$(realpath -m "${1:-$here/out}")
cache=${KATA_GO_CACHE:-/var/cache/kata-go}
src_tar=/usr/src/linux-source-6.1.tar.xz
[ -r "$src_tar" ] || { echo "build-kernel: $src_tar missing (apt-get install linux-source-6.1)" >&2; exit 1; }

# The cache key covers what decides the kernel's bytes: the source, the
# config fragment, the patches and this recipe's version (bump it when the
# build commands below change).
recipe=2
key=$( { sha256sum "$src_tar" | cut -d' ' -f1; echo "recipe $recipe"; cat "$here/kernel/kata-go.config" "$here"/kernel/patches/*.patch; } | sha256sum | cut -c1-16)
dst=$cache/kernel-$key
mkdir -p "$out"
if [ -f "$dst/vmlinux" ]; then
	for f in vmlinux config; do
		cmp -s "$dst/$f" "$out/$f" || cp -f "$dst/$f" "$out/"
	done
	echo "build-kernel: cached $dst"
	exit 0
fi

start=$(date +%s)
work=$cache/kernel-build-$key
rm -rf "$work"; mkdir -p "$work"
tar -C "$work" -xf "$src_tar"
cd "$work/linux-source-6.1"
for p in "$here"/kernel/patches/*.patch; do
	patch -s -p1 < "$p"
done
make -s ARCH=x86_64 tinyconfig
./scripts/kconfig/merge_config.sh -m .config "$here/kernel/kata-go.config" >/dev/null
make -s ARCH=x86_64 olddefconfig
# Every option the fragment asks for must have survived olddefconfig: a dropped
# dependency would otherwise give a kernel that silently lacks a feature.
missing=0
while IFS= read -r line; do
	case "$line" in CONFIG_*=*) ;; *) continue ;; esac
	opt=${line%%=*} val=${line#*=}
	if [ "$val" = n ]; then
		grep -qx "$opt=y" .config && { echo "build-kernel: $opt still set" >&2; missing=1; }
	else
		grep -qx "$opt=$val" .config || { echo "build-kernel: $opt=$val not in final config" >&2; missing=1; }
	fi
done < "$here/kernel/kata-go.config"
[ $missing = 0 ] || exit 1
make -s ARCH=x86_64 -j"$(nproc)" vmlinux
strip --strip-debug -o vmlinux.stripped vmlinux
mkdir -p "$dst.tmp"
cp vmlinux.stripped "$dst.tmp/vmlinux"
cp .config "$dst.tmp/config"
rm -rf "$dst"; mv "$dst.tmp" "$dst"
cd /; rm -rf "$work"
cp -f "$dst/vmlinux" "$dst/config" "$out/"
echo "build-kernel: built in $(( $(date +%s) - start ))s: $(stat -c %s "$out/vmlinux") bytes"
