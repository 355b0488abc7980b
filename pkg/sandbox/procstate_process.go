package sandbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// State is where the process is in its life (procstate.go).
func (p *Process) State() ProcState {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// ReportedState is the state containerd is told: an exec of a paused
// container is paused too, as runc's shim reports it.
func (p *Process) ReportedState() ProcState {
	st := p.State()
	if p.ExecID != "" && st == StateRunning && p.c.init.State() == StatePaused {
		return StatePaused
	}
	return st
}

// Check asks the state table whether v may be done to the process now; the
// error names the process and keeps the class runc's shim gives it.
func (p *Process) Check(v Verb) error {
	p.mu.Lock()
	st := p.state
	if p.starting && st == StateCreated {
		st = StateRunning // a Start is under way: as far as verbs go, it runs
	}
	p.mu.Unlock()
	if err := Allowed(st, v, p.ExecID != ""); err != nil {
		return fmt.Errorf("%s %s: %w", v, p.name(), err)
	}
	return nil
}

// name is how errors and logs call the process.
func (p *Process) name() string {
	if p.ExecID == "" {
		return "container " + p.c.ID
	}
	return "exec " + p.ExecID + " of container " + p.c.ID
}

// moveLocked moves the process to state to if the table allows it from
// where it is; p.mu is held. A move the table forbids (an exit collected
// after the process was deleted, a resume of a process that stopped
// meanwhile) leaves the state as it is.
func (p *Process) moveLocked(to ProcState) bool {
	if !next(p.state, to) {
		return false
	}
	p.state = to
	return true
}

// move is moveLocked taking p.mu.
func (p *Process) move(to ProcState) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.moveLocked(to)
}

// beginStart claims the process's Start: refused (as runc refuses it) if
// the state forbids a start or another Start is under way. endStart
// releases the claim whatever the outcome.
func (p *Process) beginStart() error {
	if err := p.Check(VerbStart); err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.starting || p.state != StateCreated {
		return fmt.Errorf("%s %s: %w", VerbStart, p.name(), Allowed(StateRunning, VerbStart, p.ExecID != ""))
	}
	p.starting = true
	return nil
}

func (p *Process) endStart() {
	p.mu.Lock()
	p.starting = false
	p.mu.Unlock()
}

// running records a successful Start, dated now on the host.
func (p *Process) running(pid uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if pid != 0 {
		p.pid = pid
	}
	if p.moveLocked(StateRunning) {
		p.started = time.Now()
	}
}

// startedAt is when the process started on the host (its creation if it
// never did): the earliest its exit may be dated.
func (p *Process) startedAt() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started.IsZero() {
		return p.created
	}
	return p.started
}

// markDeleted records containerd's Delete of the process.
func (p *Process) markDeleted() { p.move(StateDeleted) }

// settleWait bounds how long a failed agent call waits for the sandbox's
// death to be confirmed: the connection breaks at the moment the VM dies,
// and the watcher says so within moments.
const settleWait = time.Second

// settle says whether an agent call failed because the VM (or the agent
// connection) is gone. A failure that is not an agent's answer (no gRPC
// status, or Unavailable: the transport broke) waits up to settleWait for the sandbox's
// watcher to confirm the death, so the caller answers as for a process
// that is gone rather than for a transient fault.
func (s *Sandbox) settle(ctx context.Context, err error) bool {
	select {
	case <-s.dead:
		return true
	default:
	}
	if st, ok := status.FromError(err); ok && st.Code() != codes.Unavailable {
		return false // the agent answered
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return false // the agent was given up on: it may still be there
	}
	t := time.NewTimer(settleWait)
	defer t.Stop()
	select {
	case <-s.dead:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return false
}
