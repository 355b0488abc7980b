package shimv2

import (
	"context"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"golang.org/x/time/rate"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/metrics"
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

// The OOM long poll is paced so an agent answering it in a tight loop
// cannot make the shim spin: a burst of oomBurst events is taken at once,
// then one per oomInterval. Honest guests see a handful of OOM kills.
const (
	oomBurst    = 16
	oomInterval = 100 * time.Millisecond
	// oomLogEvery bounds how often ignored events are logged.
	oomLogEvery = 10 * time.Second
)

// forwardOOM long-polls the agent for OOM kills and publishes TaskOOM.
// The agent is not trusted: it may name a container of another pod (CRI
// would mark that container OOMKilled), repeat an event forever or answer
// as fast as it can. Only tasks of this shim get a TaskOOM, each at most
// once (markOOM is shared with the exit path), and nothing here grows
// with the number of events.
func (s *service) forwardOOM(sb *sandbox.Sandbox) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-sb.Dead():
			cancel()
		case <-ctx.Done():
		}
	}()
	pace := rate.NewLimiter(rate.Every(oomInterval), oomBurst)
	var ignored int
	var lastLog time.Time
	for {
		if pace.Wait(ctx) != nil {
			return
		}
		ev, err := sb.WaitOOM(ctx, &agentapi.Empty{})
		if err != nil {
			return
		}
		id := ev.GetContainerId()
		if t := s.oomTask(sb, id); t != nil {
			if t.markOOM() {
				metrics.OOMKills.Inc()
				s.events.publish(topicOOM, &eventstypes.TaskOOM{ContainerID: t.id})
			}
			continue // a repeat: already published once
		}
		ignored++
		if now := time.Now(); ignored == 1 || now.Sub(lastLog) >= oomLogEvery {
			s.log.Warn("agent reported an OOM kill of a container this shim does not run; ignored",
				"container", truncateID(id), "ignored_so_far", ignored)
			lastLog = now
		}
	}
}

// oomTask is the task an OOM event may be published for: one in this
// shim's table, running in sb. Nil for anything else.
func (s *service) oomTask(sb *sandbox.Sandbox, id string) *task {
	if !agentapi.ValidID(id) {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok || s.sb != sb {
		return nil
	}
	return t
}

// truncateID bounds an id an agent sent before it reaches a log line.
func truncateID(id string) string {
	const maxLen = 140
	if len(id) > maxLen {
		return id[:maxLen] + "..."
	}
	return id
}
