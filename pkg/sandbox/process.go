package sandbox

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"

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

	// created is when the host made the process: the earliest an exit of
	// a process that never started can be dated.
	created time.Time

	// ctx is the life of the process's long polls (WaitProcess, output,
	// stdin): cancelled by release (containerd deleted the process) or,
	// once live was called, by the sandbox's death. An agent that never
	// answers them cannot keep a goroutine or the process past either.
	ctx    context.Context
	cancel context.CancelFunc

	// mu guards pid, state, starting, started, ending and status.
	mu    sync.Mutex
	pid   uint32
	state ProcState // see procstate.go; moved only by move
	// starting: a Start is between its check and the agent's answer; a
	// second Start is refused as for a running process.
	starting bool
	// started is when the host's Start succeeded: no exit is dated
	// before it.
	started time.Time
	// ending: the exit is being collected (follow) or recorded for a
	// process that never ran (markNeverStarted); nothing else may end it.
	ending bool
	status ExitStatus

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

// follow starts collecting the exit (see collect), once.
func (p *Process) follow() {
	p.followOnce.Do(func() {
		p.mu.Lock()
		p.ending = true
		p.mu.Unlock()
		p.collect()
	})
}

// finish records the exit, stops the process and wakes every waiter, once.
func (p *Process) finish(st ExitStatus) {
	p.finishOnce.Do(func() {
		p.mu.Lock()
		p.status = st
		p.moveLocked(StateStopped)
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
		var learned time.Time // when the host learned of the exit
		select {
		case <-p.io.outDone:
			a = <-waited
			learned = time.Now()
		case a = <-waited:
			learned = time.Now()
			// An exit, or the agent will not say: either way output
			// may trail it only briefly (at once if the sandbox died).
			p.drainOutput(ctx)
		}
		st := ExitStatus{Code: VMDiedStatus, At: exitTime(learned, p.startedAt())}
		if a.err == nil {
			var lie error
			st, lie = exitStatus(a.r, learned, p.startedAt())
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

// markNeverStarted ends a process that was created but never ran (its
// start failed, or it is deleted or its VM died before Start).
func (p *Process) markNeverStarted(code uint32) {
	p.mu.Lock()
	if p.state != StateCreated || p.ending {
		p.mu.Unlock()
		return // it ran, or its exit is reported already
	}
	p.ending = true
	p.mu.Unlock()
	p.io.closeOutputs()
	p.io.close()
	p.finish(ExitStatus{Code: code, At: exitTime(time.Now(), p.created)})
}

// CloseStdin is containerd's CloseIO.
func (p *Process) CloseStdin() { p.io.requestCloseStdin() }

// stdinArgs is what the stdin copier needs to reach the agent.
func (p *Process) stdinArgs() stdinTarget {
	s := p.c.s
	return stdinTarget{ctx: p.live(), a: s.agent, cid: p.c.ID, eid: p.ExecID, timeout: s.requestTimeout(), log: s.log}
}

// Resize sets the terminal size. As with runc, a process without a
// terminal, or a stopped init, takes it as a no-op.
func (p *Process) Resize(ctx context.Context, width, height uint32) error {
	if err := p.Check(VerbResize); err != nil {
		return err
	}
	if !p.io.cfg.Terminal || p.State() == StateStopped {
		return nil
	}
	ctx, cancel := p.c.s.requestCtx(ctx)
	defer cancel()
	if _, err := p.c.s.agent.TtyWinResize(ctx, &agentapi.TtyWinResizeRequest{ContainerId: p.c.ID, ExecId: p.ExecID, Rows: height, Columns: width}); err != nil {
		return fmt.Errorf("resize terminal of %s/%s: %w", p.c.ID, p.ExecID, p.c.s.explain(err))
	}
	return nil
}

// Signal sends sig to this process (or, with all, to every process of the
// container), if its state allows (a stopped or deleted process is
// NotFound, a created exec FailedPrecondition, as with runc). A process
// that is gone by the time the agent answers (it exited meanwhile, or its
// VM died) is NotFound too: runc's shim says the same of a process whose
// runtime state vanished under it.
func (p *Process) Signal(ctx context.Context, sig uint32, all bool) error {
	if err := p.Check(VerbKill); err != nil {
		return err
	}
	s := p.c.s
	rctx, cancel := s.requestCtx(ctx)
	defer cancel()
	_, err := s.agent.SignalProcess(rctx, &agentapi.SignalProcessRequest{ContainerId: p.c.ID, ExecId: p.ExecID, Signal: sig, All: all})
	if err == nil {
		return nil
	}
	if s.settle(ctx, err) {
		return fmt.Errorf("signal %d to %s/%s: process already finished with its VM: %w", sig, p.c.ID, p.ExecID, errdefs.ErrNotFound)
	}
	if p.State() == StateStopped {
		return fmt.Errorf("signal %d to %s/%s: process already finished: %w", sig, p.c.ID, p.ExecID, errdefs.ErrNotFound)
	}
	return fmt.Errorf("signal %d to %s/%s: %w", sig, p.c.ID, p.ExecID, s.explain(err))
}
