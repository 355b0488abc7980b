package shimv2

import (
	"context"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
)

func (s *service) Pause(ctx context.Context, r *taskAPI.PauseRequest) (*emptyResponse, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	if err := t.c.Pause(ctx); err != nil {
		return nil, errToGRPC(err)
	}
	s.events.publish(topicPaused, &eventstypes.TaskPaused{ContainerID: r.ID})
	return empty, nil
}

func (s *service) Resume(ctx context.Context, r *taskAPI.ResumeRequest) (*emptyResponse, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	if err := t.c.Resume(ctx); err != nil {
		return nil, errToGRPC(err)
	}
	s.events.publish(topicResumed, &eventstypes.TaskResumed{ContainerID: r.ID})
	return empty, nil
}
