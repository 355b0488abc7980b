package sandbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"

	"github.com/containerd/containerd/mount"
	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// execFailedStatus is the status of a process that could not be started,
// as a shell reports a command it could not execute.
const execFailedStatus = 127

// ContainerOptions create a container in the sandbox.
type ContainerOptions struct {
	ID     string
	Bundle string
	Rootfs []mount.Mount
	Spec   *specs.Spec
	IO     IO
}

// Container is one OCI container in the sandbox's VM.
type Container struct {
	ID    string
	s     *Sandbox
	share string
	init  *Process

	// mu guards execs.
	mu    sync.Mutex // never held across an agent call
	execs map[string]*Process
}

// CreateContainer prepares the container's files on the host, shares them
// and creates the container in the guest; its init waits for Start.
func (s *Sandbox) CreateContainer(ctx context.Context, o ContainerOptions) (_ *Container, retErr error) {
	if !agentapi.ValidID(o.ID) {
		return nil, fmt.Errorf("container id %q: want 1-128 of [A-Za-z0-9_.+-]: %w", o.ID, errdefs.ErrInvalidArgument)
	}
	if err := CheckSpec(o.Spec); err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil, fmt.Errorf("sandbox %s is stopped: %w", s.ID, errdefs.ErrUnavailable)
	}
	if _, ok := s.containers[o.ID]; ok {
		s.mu.Unlock()
		return nil, fmt.Errorf("container %q already exists in sandbox %q: %w", o.ID, s.ID, errdefs.ErrAlreadyExists)
	}
	s.containers[o.ID] = nil // reserved while being created
	s.mu.Unlock()
	defer func() {
		if retErr != nil {
			s.mu.Lock()
			delete(s.containers, o.ID)
			s.mu.Unlock()
		}
	}()

	share := s.containerShare(o.ID)
	// A directory left by an earlier container of this id is an error,
	// never reused (skeleton.create).
	if err := s.skel.mkdir("", o.ID); err != nil {
		return nil, fmt.Errorf("create container %s: %w", o.ID, err)
	}
	defer func() {
		if retErr != nil {
			if err := unmountAll(share); err == nil {
				os.RemoveAll(share)
			}
		}
	}()
	if err := mountRootfs(s.deps.HostFS, s.skel, o.ID, o.Bundle, o.Rootfs, o.Spec.Root); err != nil {
		return nil, err
	}
	mounts, storages, err := shareVolumes(s.deps.HostFS, s.skel, o.ID, o.Spec.Mounts)
	if err != nil {
		return nil, err
	}
	spec, err := guestSpec(o.Spec, o.ID, mounts)
	if err != nil {
		return nil, err
	}
	io, err := openHostIO(ctx, o.ID, o.IO)
	if err != nil {
		return nil, err
	}
	c := &Container{ID: o.ID, s: s, share: share, execs: map[string]*Process{}}
	c.init = newProcess(c, "", io)
	cctx, cancel := s.createCtx(ctx)
	r, err := s.agent.CreateContainer(cctx, &agentapi.CreateContainerRequest{ContainerId: o.ID, OciSpec: spec, Storages: storages, Stdin: o.IO.Stdin != ""})
	cancel()
	if err == nil {
		err = checkPid("create container "+o.ID, r.GetPid())
	}
	if err != nil {
		if mustAbandon(err) {
			s.abandonContainer(o.ID)
		}
		io.closeOutputs()
		io.close()
		return nil, fmt.Errorf("create container %s: %w", o.ID, s.explain(err))
	}
	c.init.pid = r.GetPid()
	if err := io.holdStdin(); err != nil {
		s.log.Warn("stdin: the shim could not hold the FIFO open", "container", o.ID, "err", err)
	}
	// Output can be pulled from now on; the exit is collected after start.
	io.startOutput(c.init.live(), s.agent, o.ID, "", s.log)
	s.mu.Lock()
	s.containers[o.ID] = c
	s.mu.Unlock()
	return c, nil
}

// explain turns an agent's answer into its errdefs class with a bounded,
// printable message (agentError). A failure the agent did not answer
// itself, because the VM or the connection to its agent is gone, is
// errdefs.ErrUnavailable (with the VM's fate added when it died).
func (s *Sandbox) explain(err error) error {
	err = agentError(err)
	select {
	case <-s.dead:
		return fmt.Errorf("%w (%v): %w", err, s.deadErr, errdefs.ErrUnavailable)
	default:
	}
	if errors.Is(err, ttrpc.ErrClosed) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	return err
}

// Container returns a container of this sandbox.
func (s *Sandbox) Container(id string) (*Container, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	return c, ok && c != nil
}

// Containers is how many containers the sandbox holds.
func (s *Sandbox) Containers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.containers)
}

// Init is the container's first process.
func (c *Container) Init() *Process { return c.init }

// Start runs the container's init, if its state allows.
func (c *Container) Start(ctx context.Context) error {
	if err := c.init.beginStart(); err != nil {
		return err
	}
	defer c.init.endStart()
	ctx, cancel := c.s.createCtx(ctx)
	defer cancel()
	if _, err := c.s.agent.StartContainer(ctx, &agentapi.ContainerRequest{ContainerId: c.ID}); err != nil {
		c.init.markNeverStarted(execFailedStatus)
		return fmt.Errorf("start container %s: %w", c.ID, c.s.explain(err))
	}
	c.init.running(0)
	c.init.io.startStdin(c.init.stdinArgs())
	c.init.follow()
	return nil
}

// AddExec registers an exec; it runs at StartExec, as containerd expects.
// An id in use (registered, being registered, or not yet deleted) is
// AlreadyExists; the container's state must allow an exec (not paused,
// stopped or deleted, as runc's shim refuses them).
func (c *Container) AddExec(ctx context.Context, execID string, spec *specs.Process, cfg IO) (*Process, error) {
	if !agentapi.ValidID(execID) {
		return nil, fmt.Errorf("exec id %q: want 1-128 of [A-Za-z0-9_.+-]: %w", execID, errdefs.ErrInvalidArgument)
	}
	if spec == nil || len(spec.Args) == 0 {
		return nil, fmt.Errorf("exec %s: process.args is empty: %w", execID, errdefs.ErrInvalidArgument)
	}
	c.mu.Lock()
	_, dup := c.execs[execID]
	if !dup {
		c.execs[execID] = nil
	}
	c.mu.Unlock()
	if dup {
		return nil, fmt.Errorf("exec %q already exists in container %q: %w", execID, c.ID, errdefs.ErrAlreadyExists)
	}
	if err := c.init.Check(VerbExec); err != nil {
		c.mu.Lock()
		delete(c.execs, execID)
		c.mu.Unlock()
		return nil, err
	}
	io, err := openHostIO(ctx, c.ID+"-"+execID, cfg)
	if err != nil {
		c.mu.Lock()
		delete(c.execs, execID)
		c.mu.Unlock()
		return nil, err
	}
	p := newProcess(c, execID, io)
	p.specJSON, err = json.Marshal(spec)
	if err != nil {
		c.mu.Lock()
		delete(c.execs, execID)
		c.mu.Unlock()
		io.closeOutputs()
		io.close()
		return nil, fmt.Errorf("exec %s: process spec: %w", execID, err)
	}
	c.mu.Lock()
	c.execs[execID] = p
	c.mu.Unlock()
	return p, nil
}

// Exec returns a registered exec.
func (c *Container) Exec(execID string) (*Process, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.execs[execID]
	return p, ok && p != nil
}

// StartExec runs a registered exec in the guest, if its state allows and
// its container's init still runs (runc's shim: FailedPrecondition).
func (c *Container) StartExec(ctx context.Context, p *Process) error {
	if err := p.beginStart(); err != nil {
		return err
	}
	defer p.endStart()
	if st := c.init.State(); st == StateStopped || st == StateDeleted {
		return fmt.Errorf("start exec %s: container %s init process is not running: %w", p.ExecID, c.ID, errdefs.ErrFailedPrecondition)
	}
	cctx, cancel := c.s.createCtx(ctx)
	r, err := c.s.agent.ExecProcess(cctx, &agentapi.ExecProcessRequest{
		ContainerId: c.ID, ExecId: p.ExecID, Process: p.specJSON, Stdin: p.io.cfg.Stdin != "",
	})
	cancel()
	if err == nil {
		err = checkPid("exec "+p.ExecID+" in "+c.ID, r.GetPid())
	}
	if err != nil {
		if mustAbandon(err) {
			c.abandonExec(p.ExecID)
		}
		// It never ran: end it now so whoever reads its output sees EOF
		// (ctr waits for that) and Wait returns, as with runc.
		p.markNeverStarted(execFailedStatus)
		return fmt.Errorf("exec %s in %s: %w", p.ExecID, c.ID, c.s.explain(err))
	}
	p.running(r.GetPid())
	p.io.startOutput(p.live(), c.s.agent, c.ID, p.ExecID, c.s.log)
	p.io.startStdin(p.stdinArgs())
	p.follow()
	return nil
}

// RemoveExec deletes an exec (containerd's Delete of an exec), if its
// state allows: a created exec ends with status 0, a stopped one keeps its
// status. Its id is free again at once, as containerd's clients expect.
func (c *Container) RemoveExec(execID string) (*Process, error) {
	p, ok := c.Exec(execID)
	if !ok {
		return nil, fmt.Errorf("exec %s of container %s: %w", execID, c.ID, errdefs.ErrNotFound)
	}
	if err := p.Check(VerbDelete); err != nil {
		return nil, err
	}
	p.markNeverStarted(0)
	p.markDeleted()
	c.mu.Lock()
	if c.execs[execID] == p {
		delete(c.execs, execID)
	}
	c.mu.Unlock()
	p.release()
	return p, nil
}

// abandonExec kills an exec the host gave up on (its start was not
// answered in time, or answered with a lie), bounded and best effort.
func (c *Container) abandonExec(execID string) {
	select {
	case <-c.s.dead:
		return
	default:
	}
	ctx, cancel := c.s.requestCtx(context.Background())
	defer cancel()
	if _, err := c.s.agent.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: c.ID, ExecId: execID, Signal: uint32(unix.SIGKILL)}); err != nil {
		c.s.log.Warn("kill abandoned exec in guest", "container", c.ID, "exec", execID, "err", err)
	}
}

// Pause freezes the container's processes, if its init runs.
func (c *Container) Pause(ctx context.Context) error {
	if err := c.init.Check(VerbPause); err != nil {
		return err
	}
	ctx, cancel := c.s.requestCtx(ctx)
	defer cancel()
	if _, err := c.s.agent.PauseContainer(ctx, &agentapi.ContainerRequest{ContainerId: c.ID}); err != nil {
		return fmt.Errorf("pause container %s: %w", c.ID, c.s.explain(err))
	}
	c.init.move(StatePaused)
	return nil
}

// Resume thaws them, if the container is paused.
func (c *Container) Resume(ctx context.Context) error {
	if err := c.init.Check(VerbResume); err != nil {
		return err
	}
	ctx, cancel := c.s.requestCtx(ctx)
	defer cancel()
	if _, err := c.s.agent.ResumeContainer(ctx, &agentapi.ContainerRequest{ContainerId: c.ID}); err != nil {
		return fmt.Errorf("resume container %s: %w", c.ID, c.s.explain(err))
	}
	c.init.move(StateRunning)
	return nil
}

// Update changes the container's resources, unless it stopped.
func (c *Container) Update(ctx context.Context, r *specs.LinuxResources) error {
	if err := c.init.Check(VerbUpdate); err != nil {
		return err
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("update container %s: resources: %w", c.ID, errdefs.ErrInvalidArgument)
	}
	ctx, cancel := c.s.requestCtx(ctx)
	defer cancel()
	if _, err := c.s.agent.UpdateContainer(ctx, &agentapi.UpdateContainerRequest{ContainerId: c.ID, Resources: b}); err != nil {
		return fmt.Errorf("update container %s: %w", c.ID, c.s.explain(err))
	}
	return nil
}

// Stats are the container's cgroup statistics in the guest, every counter
// clamped to what a consumer can do arithmetic on.
func (c *Container) Stats(ctx context.Context) (*agentapi.StatsContainerResponse, error) {
	if err := c.init.Check(VerbStats); err != nil {
		return nil, err
	}
	ctx, cancel := c.s.requestCtx(ctx)
	defer cancel()
	r, err := c.s.agent.StatsContainer(ctx, &agentapi.ContainerRequest{ContainerId: c.ID})
	if err != nil {
		return nil, fmt.Errorf("stats of container %s: %w", c.ID, c.s.explain(err))
	}
	return sanitizeStats(r), nil
}

// Pids lists the container's processes (guest pids): impossible or
// repeated ones are dropped and the list is bounded. Whether the agent
// told the truth about them cannot be checked from the host.
func (c *Container) Pids(ctx context.Context) ([]uint32, error) {
	if err := c.init.Check(VerbPids); err != nil {
		return nil, err
	}
	if c.init.State() == StateStopped {
		return nil, nil // nothing runs in a stopped container (runc lists none)
	}
	ctx, cancel := c.s.requestCtx(ctx)
	defer cancel()
	r, err := c.s.agent.ListProcesses(ctx, &agentapi.ContainerRequest{ContainerId: c.ID})
	if err != nil {
		return nil, fmt.Errorf("list processes of container %s: %w", c.ID, c.s.explain(err))
	}
	pids, dropped := checkPids(r.GetPids())
	if dropped > 0 {
		c.s.log.Warn("dropped impossible, repeated or excess pids from the agent's listing",
			"container", c.ID, "dropped", dropped, "kept", len(pids))
	}
	return pids, nil
}

// Remove deletes the container from the guest and its files from the
// host, if the init's state allows (created or stopped; runc's shim
// refuses a running or paused one).
func (c *Container) Remove(ctx context.Context) error {
	if err := c.init.Check(VerbDelete); err != nil {
		return err
	}
	var errs []error
	select {
	case <-c.s.dead:
	default:
		rctx, cancel := c.s.requestCtx(ctx)
		if _, err := c.s.agent.RemoveContainer(rctx, &agentapi.ContainerRequest{ContainerId: c.ID}); err != nil {
			errs = append(errs, fmt.Errorf("remove container %s in guest: %w", c.ID, c.s.explain(err)))
		}
		cancel()
	}
	c.init.markNeverStarted(0)
	c.init.markDeleted()
	// Nothing more is wanted from the agent about this container: its
	// long polls end now even if the agent never answers them.
	c.init.release()
	c.mu.Lock()
	for _, p := range c.execs {
		if p != nil {
			p.release()
		}
	}
	c.mu.Unlock()
	if err := unmountAll(c.share); err != nil {
		errs = append(errs, err)
	} else if err := os.RemoveAll(c.share); err != nil {
		errs = append(errs, err)
	}
	c.s.mu.Lock()
	delete(c.s.containers, c.ID)
	c.s.mu.Unlock()
	return errors.Join(errs...)
}

// Killed collects the exit of an init that was signalled before Start (or
// whose VM died): it will never get a Start.
func (c *Container) Killed() { c.init.follow() }
