package shimv2

import (
	"strings"
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
)

func TestCheckpointIsNotSupported(t *testing.T) {
	h := newHarness(t, runs)
	_, err := h.s.Checkpoint(h.ctx, &taskAPI.CheckpointTaskRequest{ID: "c"})
	if !errdefs.IsNotImplemented(errdefs.FromGRPC(err)) || !strings.Contains(err.Error(), "not supported") {
		t.Fatalf("checkpoint: %v", err)
	}
}
