#!/bin/bash
# Installs what building and testing kata-go needs on Debian 12. With
# --test-tools it also builds containerd 2.4.2 and crictl 1.37.0 from the Go
# module proxy for the integration tier (cached under /var/cache/kata-go, so
# a second run costs nothing).
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH

pkgs=(qemu-system-x86 qemu-utils containerd runc busybox-static linux-source-6.1
	protobuf-compiler containernetworking-plugins build-essential flex bison bc
	libelf-dev libssl-dev libseccomp-dev cpio xz-utils zstd iproute2 iptables procps util-linux kmod pkg-config git patch)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	echo "install-deps: apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go 1.26 at /usr/local/go: fetched through the module proxy when missing
# or older (Debian 12's own is 1.19).
"$(dirname "$0")/install-go.sh"
export PATH=/usr/local/go/bin:$PATH

# built NAME VERSION DIR: true when DIR/NAME exists and was built from
# VERSION (its stamp says so). The stamp is the cache key: a version bump
# here rebuilds, an unchanged one costs nothing.
built() { [ -x "$3/$1" ] && [ "$(cat "$3/$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$3/$1.version"; }

if [ "${1:-}" = "--test-tools" ]; then
	# containerd 2.4.2 with its own runc shim: the same-as-runc tests run
	# runc beside kata-go on it (Debian's 1.6 runc shim cannot start under
	# a 2.4 daemon).
	ctd=v2.4.2
	dir=${KATA_GO_CONTAINERD2_DIR:-/var/cache/kata-go/containerd-$ctd}
	mkdir -p "$dir"
	for b in containerd ctr containerd-shim-runc-v2; do
		if ! built $b $ctd "$dir"; then
			echo "install-deps: building $b $ctd into $dir"
			GOBIN=$dir go install github.com/containerd/containerd/v2/cmd/$b@$ctd
			stamp $b $ctd "$dir"
		fi
	done
	crit=v1.37.0
	cri=${KATA_GO_CRI_TOOLS_DIR:-/var/cache/kata-go/cri-tools}
	mkdir -p "$cri"
	if ! built crictl $crit "$cri"; then
		echo "install-deps: building crictl $crit into $cri"
		GOBIN=$cri go install sigs.k8s.io/cri-tools/cmd/crictl@$crit
		stamp crictl $crit "$cri"
	fi
fi
