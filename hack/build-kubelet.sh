#!/bin/bash
# Builds the kubelet `make k8s-e2e` runs, from the Go module proxy, into
# ${KATA_GO_KUBELET_DIR:-/var/cache/kata-go/kubelet-$version}. Cached like
# hack/install-deps.sh's tools: the binary's version stamp is the cache key,
# so a second run costs nothing and a version bump here rebuilds.
#
# k8s.io/kubernetes is not meant to be a dependency: its go.mod replaces
# its 33 staging modules (k8s.io/api, k8s.io/client-go, …) with local
# directories, which a module that requires it cannot see. So a throwaway
# module requires k8s.io/kubernetes and replaces each staging module with
# its published twin (k8s.io/X v0.M.P for kubernetes v1.M.P), the list read
# from kubernetes' own go.mod; then `go build k8s.io/kubernetes/cmd/kubelet`.
set -euo pipefail
export PATH=/usr/local/go/bin:$PATH
export GOTOOLCHAIN=local

version=v1.37.2
dir=${KATA_GO_KUBELET_DIR:-/var/cache/kata-go/kubelet-$version}

built() { [ -x "$3/$1" ] && [ "$(cat "$3/$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$3/$1.version"; }

if built kubelet $version "$dir"; then
	echo "build-kubelet: $dir/kubelet is $version (stamp $dir/kubelet.version): nothing to do"
	exit 0
fi

start=$(date +%s)
mkdir -p "$dir"
mod=$(mktemp -d /tmp/kgo-kubelet-build.XXXXXX)
trap 'rm -rf "$mod"' EXIT
cd "$mod"
echo "build-kubelet: building kubelet $version into $dir (throwaway module $mod)"
go mod init kata-go.local/kubelet-build >/dev/null 2>&1

gomod=$(go mod download -json k8s.io/kubernetes@$version | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",*$/\1/p')
[ -f "$gomod" ] || { echo "build-kubelet: no go.mod for k8s.io/kubernetes@$version" >&2; exit 1; }
staging=$(sed -n 's#^[[:space:]]*\(k8s\.io/[^[:space:]]*\) => \./staging/.*#\1#p' "$gomod")
n=$(echo "$staging" | wc -l)
echo "build-kubelet: k8s.io/kubernetes@$version replaces $n staging modules; using their published v0${version#v1}"
go mod edit -require=k8s.io/kubernetes@$version
for m in $staging; do
	go mod edit -replace="$m=$m@v0${version#v1}"
done
go get k8s.io/kubernetes/cmd/kubelet@$version

# Kubernetes' release builds are static (CGO_ENABLED=0) and stamp their
# version into component-base, which `kubelet --version` prints.
minor=${version#v1.}
minor=${minor%%.*}
echo "build-kubelet: go build k8s.io/kubernetes/cmd/kubelet"
CGO_ENABLED=0 go build -trimpath -o "$dir/kubelet.new" -ldflags "-s -w \
	-X k8s.io/component-base/version.gitVersion=$version \
	-X k8s.io/component-base/version.gitMajor=1 \
	-X k8s.io/component-base/version.gitMinor=$minor \
	-X k8s.io/component-base/version.gitTreeState=clean" \
	k8s.io/kubernetes/cmd/kubelet
mv "$dir/kubelet.new" "$dir/kubelet"
stamp kubelet $version "$dir"
echo "build-kubelet: $("$dir/kubelet" --version) in $dir, $(($(date +%s) - start)) s"
