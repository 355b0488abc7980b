package shimv2

import (
	"sync"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/errdefs"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kata-go/kata-go/pkg/sandbox"
)

// task is one containerd task: a container and its execs.
type task struct {
	id     string
	bundle string
	owner  bool // this task's create started the VM; its delete stops it
	c      *sandbox.Container
	io     sandbox.IO

	// mu guards paused, execIO and watched.
	mu      sync.Mutex
	paused  bool
	execIO  map[string]sandbox.IO
	watched map[string]bool
}

func newTask(id, bundle string, owner bool, c *sandbox.Container, io sandbox.IO) *task {
	return &task{id: id, bundle: bundle, owner: owner, c: c, io: io, execIO: map[string]sandbox.IO{}, watched: map[string]bool{}}
}

// process finds the init ("") or an exec.
func (t *task) process(execID string) (*sandbox.Process, error) {
	if execID == "" {
		return t.c.Init(), nil
	}
	p, ok := t.c.Exec(execID)
	if !ok {
		return nil, errdefs.ToGRPCf(errdefs.ErrNotFound, "exec %s not found in task %s", execID, t.id)
	}
	return p, nil
}

// watchExit publishes TaskExit once the process has exited and its output
// has reached the host; at most once per process.
func (s *service) watchExit(t *task, p *sandbox.Process) {
	t.mu.Lock()
	if t.watched[p.ExecID] {
		t.mu.Unlock()
		return
	}
	t.watched[p.ExecID] = true
	t.mu.Unlock()
	go func() {
		<-p.Exited()
		st := p.Status()
		id := p.ExecID
		if id == "" {
			id = t.id
		}
		s.events.publish(topicExit, &eventstypes.TaskExit{
			ContainerID: t.id, ID: id, Pid: p.Pid(), ExitStatus: st.Code, ExitedAt: timestamppb.New(st.At),
		})
	}()
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
