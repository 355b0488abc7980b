package shimv2

import (
	"context"

	eventstypes "github.com/containerd/containerd/api/events"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/sandbox"
)

// watchSandbox ends every task when the VM dies: started processes are
// ended by the sandbox itself; created ones are ended here.
func (s *service) watchSandbox(sb *sandbox.Sandbox) {
	<-sb.Dead()
	s.mu.Lock()
	tasks := make([]*task, 0, len(s.tasks))
	for _, t := range s.tasks {
		tasks = append(tasks, t)
	}
	s.mu.Unlock()
	for _, t := range tasks {
		t.c.Killed()
		s.watchExit(t, t.c.Init())
	}
}

// forwardOOM long-polls the agent for OOM kills and publishes TaskOOM.
func (s *service) forwardOOM(sb *sandbox.Sandbox) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-sb.Dead()
		cancel()
	}()
	for {
		ev, err := sb.WaitOOM(ctx, &agentapi.Empty{})
		if err != nil {
			return
		}
		if t, err := s.getTask(ev.ContainerId); err == nil {
			t.markOOM()
		}
		s.events.publish(topicOOM, &eventstypes.TaskOOM{ContainerID: ev.ContainerId})
	}
}
