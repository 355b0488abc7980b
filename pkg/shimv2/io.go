package shimv2

import (
	"context"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
)

// CloseIO closes the process's stdin once what was read has been written.
// It never waits: containerd may send it before Start.
func (s *service) CloseIO(ctx context.Context, r *taskAPI.CloseIORequest) (*emptyResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.Stdin {
		p.CloseStdin()
	}
	return empty, nil
}

func (s *service) ResizePty(ctx context.Context, r *taskAPI.ResizePtyRequest) (*emptyResponse, error) {
	_, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if err := p.Resize(ctx, r.Width, r.Height); err != nil {
		return nil, errToGRPC(err)
	}
	return empty, nil
}
