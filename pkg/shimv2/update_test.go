package shimv2

import (
	"encoding/json"
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

func TestUpdateForwardsResources(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	limit := int64(64 << 20)
	b, _ := json.Marshal(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	if _, err := h.s.Update(h.ctx, &taskAPI.UpdateTaskRequest{ID: "c", Resources: &anypb.Any{Value: b}}); err != nil {
		t.Fatal(err)
	}
	if got := h.env.Agent.Resources("c"); got == nil || got.Memory == nil || got.Memory.Limit == nil || *got.Memory.Limit != limit {
		t.Fatalf("the container's resources are %+v, want a %d-byte memory limit", got, limit)
	}
	if _, err := h.s.Update(h.ctx, &taskAPI.UpdateTaskRequest{ID: "c"}); err == nil {
		t.Fatal("update without resources accepted")
	}
}

func TestUpdateBeyondTheVMIsRefused(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	limit := int64(64 << 30)
	b, _ := json.Marshal(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	_, err := h.s.Update(h.ctx, &taskAPI.UpdateTaskRequest{ID: "c", Resources: &anypb.Any{Value: b}})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "65536 MiB") || !strings.Contains(err.Error(), "512 MiB") {
		t.Fatalf("update to 64 GiB in a 512 MiB VM: %v", err)
	}
	if got := h.env.Agent.Resources("c"); got != nil {
		t.Fatalf("the agent was asked to apply it: %v", got)
	}
}
