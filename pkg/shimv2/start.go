package shimv2

import (
	"context"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
)

func (s *service) Start(ctx context.Context, r *taskAPI.StartRequest) (*taskAPI.StartResponse, error) {
	t, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	if r.ExecID == "" {
		if err := t.c.Start(ctx); err != nil {
			return nil, errToGRPC(err)
		}
		t.started = time.Now()
		s.events.publish(topicStart, &eventstypes.TaskStart{ContainerID: t.id, Pid: t.pid})
	} else {
		if err := t.c.StartExec(ctx, p); err != nil {
			return nil, errToGRPC(err)
		}
		s.events.publish(topicExecStarted, &eventstypes.TaskExecStarted{ContainerID: t.id, ExecID: r.ExecID, Pid: t.pid})
	}
	s.watchExit(t, p)
	return &taskAPI.StartResponse{Pid: t.pid}, nil
}
