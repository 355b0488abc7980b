package sandbox

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// ExitStatus is how a process ended: code, or 128+signal as a shell says.
type ExitStatus struct {
	Code uint32
	At   time.Time
	// OOMKilled: the container's cgroup in the guest saw an OOM kill.
	OOMKilled bool
}

// VMDiedStatus is reported for processes whose VM went away under them.
const VMDiedStatus = 255

// Process is one process in the guest: a container's init or an exec.
type Process struct {
	c      *Container
	ExecID string
	io     *hostIO
	// specJSON is an exec's OCI process, kept until it starts.
	specJSON []byte

	// mu guards pid, started, following and status.
	mu        sync.Mutex
	pid       uint32
	started   bool
	following bool
	status    ExitStatus

	exited chan struct{} // closed after status is set and output is drained
	// followOnce guards starting the exit collector; finishOnce closing exited.
	followOnce sync.Once
	finishOnce sync.Once
}

func newProcess(c *Container, execID string, io *hostIO) *Process {
	return &Process{c: c, ExecID: execID, io: io, exited: make(chan struct{})}
}

// Pid is the process's pid in the guest.
func (p *Process) Pid() uint32 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pid
}

// Exited is closed once the process has exited and all its output reached
// the host.
func (p *Process) Exited() <-chan struct{} { return p.exited }

// Status is valid once Exited is closed.
func (p *Process) Status() ExitStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.status
}

// Started reports whether the process was started.
func (p *Process) Started() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started
}

// follow collects the exit: output first (to EOF), then the status, so an
// exit is never reported while output is still in flight. If the VM dies,
// the process ends with VMDiedStatus.
func (p *Process) follow() {
	p.followOnce.Do(func() {
		p.mu.Lock()
		p.following = true
		p.mu.Unlock()
		p.collect()
	})
}

// finish records the exit and wakes every waiter, once.
func (p *Process) finish(st ExitStatus) {
	p.finishOnce.Do(func() {
		p.mu.Lock()
		p.status = st
		p.mu.Unlock()
		close(p.exited)
	})
}

func (p *Process) collect() {
	s := p.c.s
	go func() {
		select {
		case <-p.io.outDone:
		case <-s.dead:
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go func() {
			select {
			case <-s.dead:
				cancel()
			case <-ctx.Done():
			}
		}()
		st := ExitStatus{Code: VMDiedStatus}
		r, err := s.agent.WaitProcess(ctx, &agentapi.ProcessRequest{ContainerId: p.c.ID, ExecId: p.ExecID})
		if err == nil {
			st.Code = uint32(r.Status)
			st.At = time.Unix(0, r.ExitedAtUnixNs)
			st.OOMKilled = r.OomKilled
		} else {
			s.log.Warn("process ended with its VM", "container", p.c.ID, "exec", p.ExecID, "err", err)
		}
		if st.At.IsZero() {
			st.At = time.Now()
		}
		p.io.close()
		p.finish(st)
	}()
}

// markNeverStarted ends a process that was created but never ran.
func (p *Process) markNeverStarted(code uint32) {
	p.mu.Lock()
	if p.started || p.following {
		p.mu.Unlock()
		return // its collector reports the exit
	}
	p.started = true
	p.mu.Unlock()
	p.io.closeOutputs()
	p.io.close()
	p.finish(ExitStatus{Code: code, At: time.Now()})
}

// CloseStdin is containerd's CloseIO.
func (p *Process) CloseStdin() { p.io.requestCloseStdin() }

// Resize sets the terminal size.
func (p *Process) Resize(ctx context.Context, width, height uint32) error {
	if !p.io.cfg.Terminal {
		return fmt.Errorf("process %q has no terminal", p.ExecID)
	}
	_, err := p.c.s.agent.TtyWinResize(ctx, &agentapi.TtyWinResizeRequest{ContainerId: p.c.ID, ExecId: p.ExecID, Rows: height, Columns: width})
	return err
}

// Signal sends sig to this process (or, with all, to every process of the container).
func (p *Process) Signal(ctx context.Context, sig uint32, all bool) error {
	_, err := p.c.s.agent.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: p.c.ID, ExecId: p.ExecID, Signal: sig, All: all})
	return err
}
