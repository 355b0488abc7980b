package shimv2

import (
	"context"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
)

// Checkpoint is not supported: CRIU cannot checkpoint a process inside a VM
// from the host, and VM snapshots are not implemented.
func (s *service) Checkpoint(ctx context.Context, r *taskAPI.CheckpointTaskRequest) (*emptyResponse, error) {
	return nil, errdefs.ToGRPCf(errdefs.ErrNotImplemented, "checkpoint of task %s: not supported by kata-go (containers run inside a VM)", r.ID)
}
