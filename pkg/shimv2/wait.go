package shimv2

import (
	"context"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
)

// Wait blocks until the process exits; containerd calls it before Start.
func (s *service) Wait(ctx context.Context, r *taskAPI.WaitRequest) (*taskAPI.WaitResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.Exited():
	case <-ctx.Done():
		return nil, errdefs.ToGRPC(ctx.Err())
	}
	st := p.Status()
	return &taskAPI.WaitResponse{ExitStatus: st.Code, ExitedAt: ts(st.At)}, nil
}
