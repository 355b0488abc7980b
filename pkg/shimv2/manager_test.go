package shimv2

import (
	"slices"
	"testing"

	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
)

// containerd 2.x decodes -info's features with the type it registers
// (core/runtime/typeurl.go); CRI turns on recursive read-only mounts for
// the handler only if they decode and list "rro".
func TestRuntimeInfoFeaturesDecodeAsContainerdDoes(t *testing.T) {
	typeurl.Register(&features.Features{}, "types.containerd.io", "opencontainers/runtime-spec", "1", "features", "Features")
	b, err := RuntimeInfo("io.containerd.kata.v2", "v1")
	if err != nil {
		t.Fatal(err)
	}
	var info apitypes.RuntimeInfo
	if err := proto.Unmarshal(b, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "io.containerd.kata.v2" || info.Features == nil {
		t.Fatalf("info %v: want the name and features", &info)
	}
	v, err := typeurl.UnmarshalAny(info.Features)
	if err != nil {
		t.Fatalf("containerd could not decode the features: %v", err)
	}
	f, ok := v.(*features.Features)
	if !ok {
		t.Fatalf("features decode as %T", v)
	}
	if !slices.Contains(f.MountOptions, "rro") || !slices.Contains(f.MountOptions, "ro") {
		t.Errorf("mount options %v: want ro and rro", f.MountOptions)
	}
}
