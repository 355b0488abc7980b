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

	// created is when the host made the process; an exit the agent dates
	// earlier is not believed.
	created time.Time

	// ctx is the life of the process's long polls (WaitProcess, output,
	// stdin): cancelled by release (containerd deleted the process) or,
	// once live was called, by the sandbox's death. An agent that never
	// answers them cannot keep a goroutine or the process past either.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards pid, started, following and status.
	mu        sync.Mutex
	pid       uint32
	started   bool
	following bool
	status    ExitStatus

	exited chan struct{} // closed after status is set and output is drained
	// followOnce guards starting the exit collector; finishOnce closing
	// exited; liveOnce starting the watch on the sandbox's death.
	followOnce sync.Once
	finishOnce sync.Once
	liveOnce   sync.Once
}

func newProcess(c *Container, execID string, io *hostIO) *Process {
	ctx, cancel := context.WithCancel(context.Background())
	return &Process{c: c, ExecID: execID, io: io, exited: make(chan struct{}), created: time.Now(), ctx: ctx, cancel: cancel}
}

// live is the context for the process's long polls. The watch on the
// sandbox's death starts with the first of them, so a process that never
// runs costs no goroutine.
func (p *Process) live() context.Context {
	p.liveOnce.Do(func() {
		go func() {
			select {
			case <-p.c.s.dead:
				p.cancel()
			case <-p.ctx.Done():
			}
		}()
	})
	return p.ctx
}

// release ends whatever the host still does for the process: containerd
// deleted it, so no answer about it is wanted any more.
func (p *Process) release() { p.cancel() }

// Pid is the process's pid in the guest, checked to be a possible one.
// It means nothing on the host: containerd is told the VMM's pid.
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

// follow starts collecting the exit (see collect), once.
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

// collect waits for the exit. WaitProcess runs alongside the output copy:
// an honest agent ends the output within moments of the exit, but a
// hostile one could stream forever and hold the exit back. Once
// WaitProcess answers, output gets requestTimeout to finish, then is cut.
// Output that arrives in that time reaches the host before the exit is
// reported. If the VM dies, the process ends with VMDiedStatus.
func (p *Process) collect() {
	s := p.c.s
	ctx := p.live()
	go func() {
		type answer struct {
			r   *agentapi.WaitProcessResponse
			err error
		}
		waited := make(chan answer, 1)
		go func() {
			r, err := s.agent.WaitProcess(ctx, &agentapi.ProcessRequest{ContainerId: p.c.ID, ExecId: p.ExecID})
			waited <- answer{r, err}
		}()
		var a answer
		select {
		case <-p.io.outDone:
			a = <-waited
		case a = <-waited:
			// An exit, or the agent will not say: either way output
			// may trail it only briefly (at once if the sandbox died).
			p.drainOutput(ctx)
		}
		st := ExitStatus{Code: VMDiedStatus, At: time.Now()}
		if a.err == nil {
			var lie error
			st, lie = exitStatus(a.r, p.created, time.Now())
			if lie != nil {
				s.log.Warn("refused the agent's exit status", "container", p.c.ID, "exec", p.ExecID, "err", lie)
			}
		} else {
			select {
			case <-s.dead:
				s.log.Warn("process ended with its VM", "container", p.c.ID, "exec", p.ExecID, "err", a.err)
			default:
				// Deleted while the agent never reported its exit, or the
				// agent refused to say.
				s.log.Warn("no exit status from the agent", "container", p.c.ID, "exec", p.ExecID, "err", a.err)
			}
		}
		// Whatever still copies output (the agent failed, or is stalling)
		// has nothing more to deliver for an exited process.
		p.io.stopOutput()
		p.io.close()
		p.finish(st)
	}()
}

// drainOutputRounds bounds how many requestTimeouts output may keep
// flowing after an exit: an agent streaming without end must not keep the
// exit from containerd forever.
const drainOutputRounds = 6

// drainOutput lets output that trails an exit reach the host while it
// keeps moving, up to drainOutputRounds times requestTimeout: a stream that
// makes no progress for requestTimeout is taken to be stalled by the agent
// (or held open by a child that outlived the process) and cut.
func (p *Process) drainOutput(ctx context.Context) {
	t := time.NewTicker(p.c.s.requestTimeout())
	defer t.Stop()
	last := p.io.chunks.Load()
	for round := 1; ; round++ {
		select {
		case <-p.io.outDone:
			return
		case <-ctx.Done():
			return
		case <-t.C:
			now := p.io.chunks.Load()
			if now == last || round >= drainOutputRounds {
				p.c.s.log.Warn("output made no progress after the exit; cut", "container", p.c.ID, "exec", p.ExecID,
					"for", p.c.s.requestTimeout())
				return
			}
			last = now
		}
	}
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

// stdinArgs is what the stdin copier needs to reach the agent.
func (p *Process) stdinArgs() stdinTarget {
	s := p.c.s
	return stdinTarget{ctx: p.live(), a: s.agent, cid: p.c.ID, eid: p.ExecID, timeout: s.requestTimeout(), log: s.log}
}

// Resize sets the terminal size.
func (p *Process) Resize(ctx context.Context, width, height uint32) error {
	if !p.io.cfg.Terminal {
		return fmt.Errorf("process %q has no terminal", p.ExecID)
	}
	ctx, cancel := p.c.s.requestCtx(ctx)
	defer cancel()
	if _, err := p.c.s.agent.TtyWinResize(ctx, &agentapi.TtyWinResizeRequest{ContainerId: p.c.ID, ExecId: p.ExecID, Rows: height, Columns: width}); err != nil {
		return fmt.Errorf("resize terminal of %s/%s: %w", p.c.ID, p.ExecID, p.c.s.explain(err))
	}
	return nil
}

// Signal sends sig to this process (or, with all, to every process of the container).
func (p *Process) Signal(ctx context.Context, sig uint32, all bool) error {
	ctx, cancel := p.c.s.requestCtx(ctx)
	defer cancel()
	if _, err := p.c.s.agent.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: p.c.ID, ExecId: p.ExecID, Signal: sig, All: all}); err != nil {
		return fmt.Errorf("signal %d to %s/%s: %w", sig, p.c.ID, p.ExecID, p.c.s.explain(err))
	}
	return nil
}
