package shimv2

import (
	"context"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kata-go/kata-go/pkg/sandbox"
)

func (s *service) Delete(ctx context.Context, r *taskAPI.DeleteRequest) (*taskAPI.DeleteResponse, error) {
	t, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	// The state table answers as runc's shim: a created or stopped process
	// may be deleted, a running or paused one not (codes.Unknown, as runc).
	if err := p.Check(sandbox.VerbDelete); err != nil {
		return nil, errToGRPC(err)
	}
	if r.ExecID != "" {
		if _, err := t.c.RemoveExec(r.ExecID); err != nil {
			return nil, errToGRPC(err)
		}
		t.forget(p)
		st := p.Status()
		return &taskAPI.DeleteResponse{Pid: t.pid, ExitStatus: st.Code, ExitedAt: ts(st.At)}, nil
	}
	rmErr := t.c.Remove(ctx)
	st := p.Status()
	if st.At.IsZero() {
		st.At = time.Now()
	}
	s.mu.Lock()
	delete(s.tasks, r.ID)
	sb := s.sb
	stopVM := t.owner || len(s.tasks) == 0
	if stopVM {
		s.sb = nil
	}
	s.mu.Unlock()
	if stopVM && sb != nil {
		if err := sb.Stop(ctx); err != nil {
			s.log.Warn("stop sandbox", "err", err)
		}
	}
	if rmErr != nil {
		s.log.Warn("remove container", "id", r.ID, "err", rmErr)
	}
	s.events.publish(topicDelete, &eventstypes.TaskDelete{
		ContainerID: r.ID, Pid: t.pid, ExitStatus: st.Code, ExitedAt: timestamppb.New(st.At), ID: r.ID,
	})
	return &taskAPI.DeleteResponse{Pid: t.pid, ExitStatus: st.Code, ExitedAt: timestamppb.New(st.At)}, nil
}
