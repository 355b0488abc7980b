package agent

import (
	"context"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

func (s *service) ExecProcess(ctx context.Context, r *agentapi.ExecProcessRequest) (*agentapi.ExecProcessResponse, error) {
	if err := checkID("exec", r.ExecId); err != nil {
		return nil, errf(codes.InvalidArgument, "%v", err)
	}
	c, err := s.lookup(r.ContainerId)
	if err != nil {
		return nil, err
	}
	spec, err := execProcess(r.Process)
	if err != nil {
		return nil, errf(codes.InvalidArgument, "container %s: %v", c.id, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.procs[r.ExecId]; ok {
		// The host holds an exec id until containerd deletes the exec and
		// refuses it meanwhile; an exited one asked for again was deleted
		// there, and containerd's clients reuse ids: it is replaced.
		if !old.hasExited() {
			return nil, errf(codes.AlreadyExists, "exec %q already exists in container %q", r.ExecId, c.id)
		}
		old.stdio.close()
		delete(c.procs, r.ExecId)
	}
	if init := c.procs[""]; init == nil || init.hasExited() || !c.started {
		return nil, errf(codes.FailedPrecondition, "container %q is not running", c.id)
	}
	io, err := newStdio(r.Stdin, spec.Terminal)
	if err != nil {
		return nil, errf(codes.Internal, "exec %s: stdio: %v", r.ExecId, err)
	}
	p := newProcess(r.ExecId, io)
	s.exits.hold()
	pid, err := c.rt.exec(spec, io)
	if err != nil {
		s.exits.release()
		io.close()
		return nil, errf(codes.FailedPrecondition, "exec %s in %s: %v", r.ExecId, c.id, err)
	}
	p.pid = pid
	p.follow(s.exits.watch(pid))
	s.exits.release()
	io.closeChildEnds()
	c.procs[r.ExecId] = p
	return &agentapi.ExecProcessResponse{Pid: uint32(pid)}, nil
}

func (s *service) SignalProcess(ctx context.Context, r *agentapi.SignalProcessRequest) (*agentapi.Empty, error) {
	if r.Signal == 0 || r.Signal > 64 {
		return nil, errf(codes.InvalidArgument, "signal %d out of range", r.Signal)
	}
	c, p, err := s.lookupProcess(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	sig := unix.Signal(r.Signal)
	if r.ExecId == "" || r.All {
		if p.hasExited() && !r.All {
			return &agentapi.Empty{}, nil // nothing left to signal: not an error
		}
		if err := c.rt.signal(sig, r.All); err != nil && !p.hasExited() {
			return nil, errf(codes.FailedPrecondition, "signal %d to %s: %v", r.Signal, c.id, err)
		}
		return &agentapi.Empty{}, nil
	}
	if p.hasExited() {
		return &agentapi.Empty{}, nil
	}
	if err := unix.Kill(p.pid, sig); err != nil && err != unix.ESRCH {
		return nil, errf(codes.Internal, "signal %d to exec %s: %v", r.Signal, r.ExecId, err)
	}
	return &agentapi.Empty{}, nil
}

func (s *service) WaitProcess(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.WaitProcessResponse, error) {
	_, p, err := s.lookupProcess(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-ctx.Done():
		return nil, errf(codes.Canceled, "wait for %s/%s: %v", r.ContainerId, r.ExecId, ctx.Err())
	}
	return &agentapi.WaitProcessResponse{
		Status:         p.status.status,
		Signal:         p.status.signal,
		ExitedAtUnixNs: p.exitedAt.UnixNano(),
		OomKilled:      r.ExecId == "" && s.oomKilled(r.ContainerId),
	}, nil
}

func (s *service) WriteStdin(ctx context.Context, r *agentapi.WriteStreamRequest) (*agentapi.WriteStreamResponse, error) {
	_, p, err := s.lookupProcess(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	n, err := p.stdio.write(r.Data)
	if err != nil {
		return nil, errf(codes.FailedPrecondition, "write stdin of %s/%s: %v", r.ContainerId, r.ExecId, err)
	}
	return &agentapi.WriteStreamResponse{Len: uint32(n)}, nil
}

func (s *service) CloseStdin(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.Empty, error) {
	_, p, err := s.lookupProcess(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	p.stdio.closeStdin()
	return &agentapi.Empty{}, nil
}

func (s *service) ReadStdout(ctx context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
	_, p, err := s.lookupProcess(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	data, err := read(p.stdio.stdout, r.Len)
	if err != nil {
		return nil, errf(codes.Internal, "read stdout of %s/%s: %v", r.ContainerId, r.ExecId, err)
	}
	return &agentapi.ReadStreamResponse{Data: data}, nil
}

func (s *service) ReadStderr(ctx context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
	_, p, err := s.lookupProcess(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	data, err := read(p.stdio.stderr, r.Len)
	if err != nil {
		return nil, errf(codes.Internal, "read stderr of %s/%s: %v", r.ContainerId, r.ExecId, err)
	}
	return &agentapi.ReadStreamResponse{Data: data}, nil
}

func (s *service) TtyWinResize(ctx context.Context, r *agentapi.TtyWinResizeRequest) (*agentapi.Empty, error) {
	_, p, err := s.lookupProcess(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	if !p.stdio.tty || p.stdio.stdout == nil {
		return nil, errf(codes.FailedPrecondition, "%s/%s has no terminal", r.ContainerId, r.ExecId)
	}
	ws := &unix.Winsize{Row: uint16(r.Rows), Col: uint16(r.Columns)}
	if err := unix.IoctlSetWinsize(int(p.stdio.stdout.Fd()), unix.TIOCSWINSZ, ws); err != nil {
		return nil, errf(codes.Internal, "resize terminal of %s/%s: %v", r.ContainerId, r.ExecId, err)
	}
	return &agentapi.Empty{}, nil
}
