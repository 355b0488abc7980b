package shimv2

import (
	"context"
	"encoding/json"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Update changes the container's cgroup resources inside the guest. The
// VM's own size is fixed at start (no hotplug on microvm): a memory limit
// larger than the VM is refused, naming both sizes.
func (s *service) Update(ctx context.Context, r *taskAPI.UpdateTaskRequest) (*emptyResponse, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	if r.Resources == nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrInvalidArgument, "update of task %s: no resources", r.ID)
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources.GetValue(), &res); err != nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrInvalidArgument, "update of task %s: resources: %v", r.ID, err)
	}
	s.mu.Lock()
	sb, podTask := s.sb, r.ID == s.sandboxID
	s.mu.Unlock()
	if sb != nil {
		if err := sb.CheckResourcesFit(r.ID, &res); err != nil {
			return nil, errToGRPC(err)
		}
	}
	if err := t.c.Update(ctx, &res); err != nil {
		return nil, errToGRPC(err)
	}
	// The sandbox task's resources are the pod's: a larger pod gets a
	// larger host cgroup (the VM itself keeps its size).
	if sb != nil && podTask {
		if err := sb.GrowPodCgroup(&res); err != nil {
			return nil, errToGRPC(err)
		}
	}
	return empty, nil
}
