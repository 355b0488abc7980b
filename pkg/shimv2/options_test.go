package shimv2

import (
	"strings"
	"testing"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/runtime/linux/runctypes"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/protobuf/types/known/anypb"
)

// TestRuntimeOptionTypes: each options type a client may send is read with
// the URL containerd's typeurl gives it, not a hand-written one.
func TestRuntimeOptionTypes(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  any
		want runtimeOptions
	}{
		{"CRI runtime options", &runtimeoptions.Options{ConfigPath: "/etc/kata-go/x.toml"}, runtimeOptions{ConfigPath: "/etc/kata-go/x.toml"}},
		{"runc options", &runcoptions.Options{ShimCgroup: "/shims/a", BinaryName: "runc"}, runtimeOptions{ShimCgroup: "/shims/a"}},
		{"WithShimCgroup on a non-runc runtime", &runctypes.CreateOptions{ShimCgroup: "/shims/b"}, runtimeOptions{ShimCgroup: "/shims/b"}},
		{"someone else's", &runctypes.RuncOptions{Runtime: "x"}, runtimeOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := typeurl.MarshalAny(tc.msg)
			if err != nil {
				t.Fatal(err)
			}
			got, err := parseOptions(&anypb.Any{TypeUrl: a.GetTypeUrl(), Value: a.GetValue()})
			if err != nil || got != tc.want {
				t.Fatalf("parseOptions(%s) = %+v, %v; want %+v", a.GetTypeUrl(), got, err, tc.want)
			}
		})
	}
	if got, err := parseOptions(nil); err != nil || got != (runtimeOptions{}) {
		t.Fatalf("nil options: %+v %v", got, err)
	}
	_, err := parseOptions(&anypb.Any{TypeUrl: "containerd.runc.v1.Options", Value: []byte{0xff, 0xff}})
	if err == nil || !strings.Contains(err.Error(), "containerd.runc.v1.Options") {
		t.Fatalf("garbage runc options: %v", err)
	}
}

func TestShimCgroupMustExist(t *testing.T) {
	ro := runtimeOptions{ShimCgroup: "/kgo-no-such-cgroup/shim"}
	if err := ro.placeShim(); err == nil || !strings.Contains(err.Error(), "shim_cgroup") {
		t.Fatalf("placeShim into a missing cgroup: %v", err)
	}
	if err := (runtimeOptions{ShimCgroup: "relative"}).placeShim(); err == nil {
		t.Fatal("a relative shim cgroup was accepted")
	}
}
