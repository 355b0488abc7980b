package shimv2

import (
	"context"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
)

// Kill signals a process. A process that already exited is not an error:
// CRI's stop sends SIGTERM then SIGKILL and must not fail on a race.
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptyResponse, error) {
	t, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.Exited():
		return empty, nil
	default:
	}
	if !p.Started() && r.ExecID != "" {
		return nil, errdefs.ToGRPCf(errdefs.ErrFailedPrecondition, "exec %s of task %s is not started", r.ExecID, r.ID)
	}
	if err := p.Signal(ctx, r.Signal, r.All); err != nil {
		return nil, errToGRPC(err)
	}
	// A created init that is killed never gets a Start: collect its exit now.
	if r.ExecID == "" && !p.Started() {
		t.c.Killed()
		s.watchExit(t, p)
	}
	return empty, nil
}
