package agent

import (
	"context"
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

func (s *service) CreateContainer(ctx context.Context, r *agentapi.CreateContainerRequest) (*agentapi.CreateContainerResponse, error) {
	if err := checkID("container", r.ContainerId); err != nil {
		return nil, errf(codes.InvalidArgument, "%v", err)
	}
	spec, err := guestSpec(r.ContainerId, r.OciSpec, s.isContainerInit)
	if err != nil {
		return nil, errf(codes.InvalidArgument, "container %s: %v", r.ContainerId, err)
	}
	// Reserve the id first so two creates of one id cannot race.
	s.mu.Lock()
	if _, ok := s.containers[r.ContainerId]; ok {
		s.mu.Unlock()
		return nil, errf(codes.AlreadyExists, "container %q already exists", r.ContainerId)
	}
	s.containers[r.ContainerId] = nil
	s.mu.Unlock()
	c, err := s.createContainer(r, spec)
	s.mu.Lock()
	if err != nil {
		delete(s.containers, r.ContainerId)
	} else {
		s.containers[r.ContainerId] = c
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	return &agentapi.CreateContainerResponse{Pid: uint32(c.init().pid)}, nil
}

func (s *service) createContainer(r *agentapi.CreateContainerRequest, spec *specs.Spec) (*container, error) {
	for k, v := range podSysctls(spec) {
		if err := s.mounter.sysctl(k, v); err != nil {
			return nil, errf(codes.InvalidArgument, "container %s: sysctl %s=%s: %v", r.ContainerId, k, v, err)
		}
	}
	for _, st := range r.Storages {
		if err := s.mounter.mount(st); err != nil {
			return nil, errf(codes.InvalidArgument, "container %s: storage %s %q at %q: %v", r.ContainerId, st.Driver, st.Source, st.MountPoint, err)
		}
	}
	io, err := newStdio(r.Stdin, spec.Process.Terminal)
	if err != nil {
		return nil, errf(codes.Internal, "container %s: stdio: %v", r.ContainerId, err)
	}
	p := newProcess("", io)
	s.exits.hold()
	rt, pid, err := s.runner.create(r.ContainerId, spec, io)
	if err != nil {
		s.exits.release()
		io.close()
		return nil, errf(codes.FailedPrecondition, "container %s: %v", r.ContainerId, err)
	}
	p.pid = pid
	p.follow(s.exits.watch(pid))
	s.exits.release()
	io.closeChildEnds()
	if ch, err := rt.oom(); err == nil {
		s.ooms.watch(r.ContainerId, ch)
	}
	return &container{id: r.ContainerId, rt: rt, spec: spec, procs: map[string]*process{"": p}}, nil
}

func (s *service) StartContainer(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	c, err := s.lookup(r.ContainerId)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		return nil, errf(codes.FailedPrecondition, "container %q already started", c.id)
	}
	if err := c.rt.start(); err != nil {
		return nil, errf(codes.FailedPrecondition, "start container %s: %v", c.id, err)
	}
	c.started = true
	return &agentapi.Empty{}, nil
}

func (s *service) RemoveContainer(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	c, err := s.lookup(r.ContainerId)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	delete(s.containers, r.ContainerId)
	s.mu.Unlock()
	if err := c.destroy(); err != nil {
		return nil, errf(codes.Internal, "%v", err)
	}
	return &agentapi.Empty{}, nil
}

func (s *service) PauseContainer(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	c, err := s.lookup(r.ContainerId)
	if err != nil {
		return nil, err
	}
	if err := c.rt.pause(); err != nil {
		return nil, errf(codes.FailedPrecondition, "pause %s: %v", c.id, err)
	}
	return &agentapi.Empty{}, nil
}

func (s *service) ResumeContainer(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	c, err := s.lookup(r.ContainerId)
	if err != nil {
		return nil, err
	}
	if err := c.rt.resume(); err != nil {
		return nil, errf(codes.FailedPrecondition, "resume %s: %v", c.id, err)
	}
	return &agentapi.Empty{}, nil
}

func (s *service) UpdateContainer(ctx context.Context, r *agentapi.UpdateContainerRequest) (*agentapi.Empty, error) {
	c, err := s.lookup(r.ContainerId)
	if err != nil {
		return nil, err
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources, &res); err != nil {
		return nil, errf(codes.InvalidArgument, "update %s: decode resources: %v", c.id, err)
	}
	if err := c.rt.update(&res); err != nil {
		return nil, errf(codes.FailedPrecondition, "update %s: %v", c.id, err)
	}
	return &agentapi.Empty{}, nil
}

func (s *service) StatsContainer(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.StatsContainerResponse, error) {
	c, err := s.lookup(r.ContainerId)
	if err != nil {
		return nil, err
	}
	st, err := c.rt.stats()
	if err != nil {
		return nil, errf(codes.Internal, "stats %s: %v", c.id, err)
	}
	return st, nil
}

func (s *service) ListProcesses(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.ListProcessesResponse, error) {
	c, err := s.lookup(r.ContainerId)
	if err != nil {
		return nil, err
	}
	pids, err := c.rt.pids()
	if err != nil {
		return nil, errf(codes.Internal, "list processes of %s: %v", c.id, err)
	}
	out := make([]uint32, len(pids))
	for i, p := range pids {
		out[i] = uint32(p)
	}
	return &agentapi.ListProcessesResponse{Pids: out}, nil
}

func (s *service) GetOOMEvent(ctx context.Context, _ *agentapi.Empty) (*agentapi.OOMEvent, error) {
	id, err := s.ooms.pop(ctx)
	if err != nil {
		return nil, errf(codes.Canceled, "wait for OOM event: %v", err)
	}
	return &agentapi.OOMEvent{ContainerId: id}, nil
}

// isContainerInit reports whether pid is the live init of a container here.
func (s *service) isContainerInit(pid int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.containers {
		if c == nil {
			continue
		}
		if p := c.init(); p != nil && p.pid == pid && !p.hasExited() {
			return true
		}
	}
	return false
}
