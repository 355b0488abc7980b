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
	// pid is what containerd is told for every process of this task: the
	// host pid of the pod's VMM. containerd and host tools take a task pid
	// as a host pid (kill it, open /proc/PID/ns/net); a guest pid would name
	// an unrelated host process. Kata reports the VMM's pid the same way.
	pid uint32
	// created and started time the task's start for the boot-phase log.
	created, started time.Time

	// mu guards oomSent, execIO and watched.
	mu      sync.Mutex
	oomSent bool // a TaskOOM went out for this container
	execIO  map[string]sandbox.IO
	// watched: processes whose TaskExit is (being) published; keyed by
	// process, not exec id, since an id is reused once its exec is deleted.
	watched map[*sandbox.Process]bool
}

func newTask(id, bundle string, owner bool, c *sandbox.Container, io sandbox.IO, pid uint32) *task {
	return &task{id: id, bundle: bundle, owner: owner, c: c, io: io, pid: pid, execIO: map[string]sandbox.IO{}, watched: map[*sandbox.Process]bool{}}
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
	if t.watched[p] {
		t.mu.Unlock()
		return
	}
	t.watched[p] = true
	t.mu.Unlock()
	go func() {
		<-p.Exited()
		st := p.Status()
		id := p.ExecID
		if id == "" {
			id = t.id
		}
		// containerd learns of an OOM kill before the exit it caused, even
		// when the OOM long poll has not delivered it yet.
		if st.OOMKilled && t.markOOM() {
			s.events.publish(topicOOM, &eventstypes.TaskOOM{ContainerID: t.id})
		}
		s.events.publish(topicExit, &eventstypes.TaskExit{
			ContainerID: t.id, ID: id, Pid: t.pid, ExitStatus: st.Code, ExitedAt: timestamppb.New(st.At),
		})
		if p.ExecID == "" && t.owner {
			s.logPhases(t, time.Now())
		}
	}()
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// logPhases logs when each step of the pod's first task happened, in ms
// since the shim server started; `make bench` reads this line.
func (s *service) logPhases(t *task, exitSeen time.Time) {
	s.mu.Lock()
	sb := s.sb
	s.mu.Unlock()
	if sb == nil {
		return
	}
	ms := func(at time.Time) int64 {
		if at.IsZero() {
			return -1
		}
		return at.Sub(s.started).Milliseconds()
	}
	p := sb.Phases
	s.log.Info("boot phases",
		"sandbox_begin_ms", ms(p.Begin), "vmm_spawned_ms", ms(p.VMMSpawned), "agent_ready_ms", ms(p.AgentReady),
		"container_created_ms", ms(t.created), "container_started_ms", ms(t.started), "exit_seen_ms", ms(exitSeen),
		"guest_agent_uptime_ms", p.GuestAgentUptime.Milliseconds())
}

// forget drops what the task keeps of a deleted exec, so its id can be
// used again.
func (t *task) forget(p *sandbox.Process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.watched, p)
	if cur, ok := t.c.Exec(p.ExecID); !ok || cur == p {
		delete(t.execIO, p.ExecID)
	}
}

// markOOM records that a TaskOOM is being sent; false if one already was.
func (t *task) markOOM() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.oomSent {
		return false
	}
	t.oomSent = true
	return true
}
