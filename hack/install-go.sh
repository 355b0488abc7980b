#!/bin/bash
# Makes sure Go >= 1.26 is at $GOROOT_DIR (default /usr/local/go), where the
# Makefile and CI look first. Debian 12 ships Go 1.19 only, so on a fresh
# machine this installs Debian's golang-go and uses it to fetch the official
# toolchain as a module from the Go module proxy: `go mod download` checks
# it against the checksum database (sum.golang.org) like any module, which
# is the same path `GOTOOLCHAIN` takes in newer Go. Nothing else is
# downloaded and no other site is needed.
set -euo pipefail

want_minor=26
toolchain=${KATA_GO_TOOLCHAIN:-go1.26.8}
dest=${GOROOT_DIR:-/usr/local/go}

# minor prints the minor version of the Go at $1 (0 when it is not Go).
minor() {
	local v
	v=$("$1" env GOVERSION 2>/dev/null) || { echo 0; return; }
	v=${v#go1.}
	echo "${v%%.*}" | tr -cd '0-9' | sed 's/^$/0/'
}

if [ -x "$dest/bin/go" ] && [ "$(minor "$dest/bin/go")" -ge $want_minor ]; then
	exit 0
fi

boot=""
for g in "$(command -v go 2>/dev/null || true)" /usr/lib/go/bin/go /usr/lib/go-1.19/bin/go; do
	if [ -n "$g" ] && [ -x "$g" ]; then boot=$g; break; fi
done
if [ -z "$boot" ]; then
	echo "install-go: no Go at all: apt-get install golang-go (Debian's 1.19, only to fetch $toolchain)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends golang-go ca-certificates >/dev/null
	boot=/usr/lib/go/bin/go
fi

echo "install-go: fetching $toolchain through the Go module proxy with $("$boot" version)"
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
mod=golang.org/toolchain@v0.0.1-$toolchain.linux-amd64
# Outside any module, with a private cache: nothing of the host's Go setup
# is used or changed. GOTOOLCHAIN=local stops a newer boot Go from switching.
json=$(cd "$work" && GOTOOLCHAIN=local GO111MODULE=on GOPATH="$work/gopath" GOMODCACHE="$work/mod" GOFLAGS=-modcacherw \
	"$boot" mod download -json "$mod")
dir=$(printf '%s\n' "$json" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
[ -n "$dir" ] && [ -f "$dir/bin/go" ] || { echo "install-go: download of $mod gave no toolchain:" >&2; echo "$json" >&2; exit 1; }

# A module zip keeps no file modes: the toolchain's programs need theirs.
chmod -R u+w "$dir"
chmod 0755 "$dir"/bin/* "$dir"/pkg/tool/*/*
if [ -e "$dest" ]; then
	old=$dest.old-$(date +%s)
	echo "install-go: $dest holds an older Go; moved to $old"
	mv "$dest" "$old"
fi
mkdir -p "$(dirname "$dest")"
cp -a "$dir" "$dest.tmp"
mv "$dest.tmp" "$dest"
echo "install-go: $("$dest/bin/go" version) at $dest"
