#!/bin/bash
# Fetches what `make conformance` needs beyond `make deps` (which also
# installs iptables for CNI portmap, and procps and util-linux, whose pgrep
# and ipcs go into the test busybox image), into
# /var/cache/kata-go/conformance (a second run costs nothing):
#   critest   cri-tools v1.37.0 has no main package for it: it is a test
#             binary, built with `go test -c` in a writable copy of the module
#   registry  distribution v3.1.2, serving the test images on 127.0.0.1
#   busybox   Debian's dynamically linked busybox: the critest busybox image
#             must run applets as separate programs (busybox-static runs
#             them in-process, which masked-path checks see through)
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
dir=${KATA_GO_CONFORMANCE_DIR:-/var/cache/kata-go/conformance}
mkdir -p "$dir"

# Each binary carries a stamp of the version it was built from: the cache
# key, so a version bump here rebuilds and an unchanged one costs nothing.
built() { [ -x "$dir/$1" ] && [ "$(cat "$dir/$1.version" 2>/dev/null)" = "$2" ]; }
crit=v1.37.0
reg=v3.1.2
if ! built critest $crit; then
	echo "conformance-deps: building critest $crit"
	mod=$(go mod download -json sigs.k8s.io/cri-tools@$crit | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	cp -r "$mod/." "$work/"
	chmod -R u+w "$work"
	(cd "$work" && go test -c -o "$dir/critest" ./cmd/critest)
	echo $crit >"$dir/critest.version"
fi
if ! built registry $reg; then
	echo "conformance-deps: building registry $reg"
	GOBIN=$dir go install github.com/distribution/distribution/v3/cmd/registry@$reg
	echo $reg >"$dir/registry.version"
fi
if [ ! -x "$dir/busybox-root/bin/busybox" ]; then
	echo "conformance-deps: fetching Debian's busybox package"
	(cd "$dir" && rm -f busybox_*.deb &&
		{ apt-get download busybox >/dev/null 2>&1 || { apt-get update -qq && apt-get download busybox >/dev/null 2>&1; }; } &&
		dpkg-deb -x busybox_*.deb busybox-root)
fi
