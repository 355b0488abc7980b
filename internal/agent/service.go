package agent

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// version is what Check reports; Run sets it from the linker-set value.
var version = "dev"

// service implements the agent's ttrpc API.
type service struct {
	runner  runner
	exits   exitSource
	mounter mounter
	clock   wallClock
	entropy entropyPool
	started time.Duration // guest uptime when serving began

	// mu guards containers. It is never held across a blocking call
	// (a wait, a read, a container start).
	mu         sync.Mutex
	containers map[string]*container

	ooms *oomQueue
	// oomKilled says whether a container's cgroup saw an OOM kill.
	oomKilled func(id string) bool
	// forTemplate spares the VM at the host's next hang-up (nil: no
	// channel to spare, as on the host in tests).
	forTemplate func()
	// warmRoot makes the root of the container a template's guest runs
	// before it is saved, and cleanup removes it (nil: no warm-up).
	warmRoot func() (root string, cleanup func() error, err error)
	// debug are the operator's debug shells (rpc_debug.go).
	debug *debugShells
}

var _ agentapi.AgentService = (*service)(nil)

func newService(r runner, exits exitSource, m mounter, started time.Duration) *service {
	return &service{
		runner:     r,
		exits:      exits,
		mounter:    m,
		clock:      guestClock{},
		entropy:    guestEntropy{},
		started:    started,
		containers: map[string]*container{},
		ooms:       newOOMQueue(),
		oomKilled:  oomKilled,
		debug:      newDebugShells(),
	}
}

func (s *service) Check(context.Context, *agentapi.CheckRequest) (*agentapi.CheckResponse, error) {
	return &agentapi.CheckResponse{Version: version, AgentStartUptimeNs: int64(s.started)}, nil
}

func (s *service) lookup(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok || c == nil { // nil: reserved by a create still under way
		return nil, status.Errorf(codes.NotFound, "container %q not found", id)
	}
	return c, nil
}

func (s *service) lookupProcess(cid, eid string) (*container, *process, error) {
	c, err := s.lookup(cid)
	if err != nil {
		return nil, nil, err
	}
	p, err := c.process(eid)
	if err != nil {
		return nil, nil, err
	}
	return c, p, nil
}

func (s *service) CreateSandbox(ctx context.Context, r *agentapi.CreateSandboxRequest) (*agentapi.Empty, error) {
	if r.Hostname != "" {
		if err := s.mounter.sethostname(r.Hostname); err != nil {
			return nil, status.Errorf(codes.Internal, "set hostname %q: %v", r.Hostname, err)
		}
	}
	if err := s.mounter.writeDNS(r.Dns); err != nil {
		return nil, status.Errorf(codes.Internal, "write resolv.conf: %v", err)
	}
	for _, st := range r.Storages {
		if err := s.mounter.mount(st); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "sandbox storage %s %q at %q: %v", st.Driver, st.Source, st.MountPoint, err)
		}
	}
	return &agentapi.Empty{}, nil
}

func (s *service) DestroySandbox(ctx context.Context, _ *agentapi.DestroySandboxRequest) (*agentapi.Empty, error) {
	s.mu.Lock()
	all := make([]*container, 0, len(s.containers))
	for id, c := range s.containers {
		all = append(all, c)
		delete(s.containers, id)
	}
	s.mu.Unlock()
	var firstErr error
	for _, c := range all {
		if err := c.destroy(); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	s.mounter.sync()
	if firstErr != nil {
		return nil, status.Errorf(codes.Internal, "destroy sandbox: %v", firstErr)
	}
	return &agentapi.Empty{}, nil
}

func errf(code codes.Code, format string, args ...any) error {
	return status.Error(code, fmt.Sprintf(format, args...))
}
