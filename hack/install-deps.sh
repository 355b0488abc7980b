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

if [ "${1:-}" = "--test-tools" ]; then
	dir=${KATA_GO_CONTAINERD2_DIR:-/var/cache/kata-go/containerd-v2.4.2}
	if [ ! -x "$dir/containerd" ] || [ ! -x "$dir/ctr" ]; then
		echo "install-deps: building containerd v2.4.2 into $dir (about 10 minutes cold)"
		mkdir -p "$dir"
		GOBIN=$dir go install github.com/containerd/containerd/v2/cmd/containerd@v2.4.2 github.com/containerd/containerd/v2/cmd/ctr@v2.4.2
	fi
	cri=/var/cache/kata-go/cri-tools
	if [ ! -x "$cri/crictl" ]; then
		echo "install-deps: building crictl v1.37.0 into $cri"
		mkdir -p "$cri"
		GOBIN=$cri go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0
	fi
fi
