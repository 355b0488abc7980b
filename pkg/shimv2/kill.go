package shimv2

import (
	"context"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"

	"github.com/kata-go/kata-go/pkg/sandbox"
)

// Kill signals a process. As with runc's shim, a process that already
// exited (or went with its VM) is NotFound ("process already finished"):
// CRI's stop and containerd's clients take that as "already gone"; an exec
// not yet started is FailedPrecondition.
func (s *service) Kill(ctx context.Context, r *taskAPI.KillRequest) (*emptyResponse, error) {
	t, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.Signal(ctx, r.Signal, r.All); err != nil {
		return nil, errToGRPC(err)
	}
	// A created init that is killed never gets a Start: collect its exit now.
	if r.ExecID == "" && p.State() == sandbox.StateCreated {
		t.c.Killed()
		s.watchExit(t, p)
	}
	return empty, nil
}
