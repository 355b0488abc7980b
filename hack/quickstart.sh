#!/bin/bash
# From a fresh Debian 12 machine to a container in a VM: install packages,
# build and install kata-go, start containerd if none runs, import a small
# locally built busybox image and run `uname -r` in a VM.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
cd "$(dirname "$0")/.."
hack/install-deps.sh
make install

sock=/run/containerd/containerd.sock
if ! ctr -a "$sock" version >/dev/null 2>&1; then
	# No containerd answers: start one of our own (it keeps running).
	sock=/run/kata-go-containerd/containerd.sock
	if ! ctr -a "$sock" version >/dev/null 2>&1; then
		mkdir -p /run/kata-go-containerd /var/lib/kata-go-containerd
		cat > /run/kata-go-containerd/config.toml <<TOML
version = 2
root = "/var/lib/kata-go-containerd"
state = "/run/kata-go-containerd/state"
[grpc]
  address = "$sock"
[ttrpc]
  address = "$sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
TOML
		PATH=/usr/local/bin:$PATH setsid containerd --config /run/kata-go-containerd/config.toml \
			>/run/kata-go-containerd/containerd.log 2>&1 < /dev/null &
		for _ in $(seq 100); do ctr -a "$sock" version >/dev/null 2>&1 && break; sleep 0.1; done
	fi
fi
image=docker.io/library/busybox:kata-go
if ! ctr -a "$sock" images ls -q | grep -qx "$image"; then
	go run ./hack/mkimage -ref "$image" -o /tmp/kata-go-busybox.tar
	ctr -a "$sock" images import /tmp/kata-go-busybox.tar >/dev/null
fi
echo "host kernel:  $(uname -r)"
echo -n "guest kernel: "
ctr -a "$sock" run --rm --runtime io.containerd.kata.v2 "$image" "demo-$$" uname -r
