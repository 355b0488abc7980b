#!/bin/bash
# Fetches what `make conformance` needs beyond `make deps` (which also
# installs iptables for CNI portmap, and procps and util-linux, whose pgrep
# and ipcs go into the test busybox image), into
# /var/cache/kata-go/conformance (a second run costs nothing):
#   critest   cri-tools v1.37.0 has no main package for it: it is a test
#             binary, built with `go test -c` in a writable copy of the module
#   registry  distribution v3.1.2, serving the test images on 127.0.0.1
#   containerd-shim-runc-v2 of containerd 2.4.2, next to that containerd,
#             for the runc reference run (Debian's 1.6 shim cannot start
#             under a 2.4 daemon)
#   busybox   Debian's dynamically linked busybox: the critest busybox image
#             must run applets as separate programs (busybox-static runs
#             them in-process, which masked-path checks see through)
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
dir=${KATA_GO_CONFORMANCE_DIR:-/var/cache/kata-go/conformance}
mkdir -p "$dir"

if [ ! -x "$dir/critest" ]; then
	echo "conformance-deps: building critest v1.37.0"
	mod=$(go mod download -json sigs.k8s.io/cri-tools@v1.37.0 | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	cp -r "$mod/." "$work/"
	chmod -R u+w "$work"
	(cd "$work" && go test -c -o "$dir/critest" ./cmd/critest)
fi
if [ ! -x "$dir/registry" ]; then
	echo "conformance-deps: building registry v3.1.2"
	GOBIN=$dir go install github.com/distribution/distribution/v3/cmd/registry@v3.1.2
fi
ctd2=${KATA_GO_CONTAINERD2_DIR:-/var/cache/kata-go/containerd-v2.4.2}
if [ ! -x "$ctd2/containerd-shim-runc-v2" ]; then
	echo "conformance-deps: building containerd-shim-runc-v2 v2.4.2"
	GOBIN=$ctd2 go install github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@v2.4.2
fi
if [ ! -x "$dir/busybox-root/bin/busybox" ]; then
	echo "conformance-deps: fetching Debian's busybox package"
	(cd "$dir" && rm -f busybox_*.deb &&
		{ apt-get download busybox >/dev/null 2>&1 || { apt-get update -qq && apt-get download busybox >/dev/null 2>&1; }; } &&
		dpkg-deb -x busybox_*.deb busybox-root)
fi
