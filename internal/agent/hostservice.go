package agent

import (
	"context"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// Options are what a Service run on the host is built from.
type Options struct {
	// Dir is a scratch directory for the host processes' start gates.
	Dir string
	// ClockOffset is how far the service's wall clock starts ahead of the
	// host's.
	ClockOffset time.Duration
	// Command maps a process's args to the host command run for it (nil:
	// the args themselves), so a test can give "sleep" a meaning.
	Command func(args []string) []string
}

// Service is the agent's real request handling with the host edges in
// place of the guest's (hostedges.go): what host-side tests talk to, over
// ttrpc (agenttest), instead of a hand-written fake. Its accessors show
// what only the edges see.
type Service struct {
	agentapi.AgentService
	svc    *service
	runner *hostRunner
	mount  *hostMounter
	clock  *offsetClock
	seeds  *hostEntropy
}

// NewService returns the agent service over host edges.
func NewService(o Options) *Service {
	ex := newHostExits()
	r := &hostRunner{dir: o.Dir, exits: ex, command: o.Command, specs: map[string]*specs.Spec{}, ooms: map[string]bool{}}
	m := &hostMounter{}
	clk := &offsetClock{off: o.ClockOffset}
	s := newService(r, ex, m, uptime())
	s.clock = clk
	seeds := &hostEntropy{}
	s.entropy = seeds
	s.oomKilled = r.oomKilled
	return &Service{AgentService: s, svc: s, runner: r, mount: m, clock: clk, seeds: seeds}
}

// Seeds are the entropy seeds the service was asked to add, in order.
func (s *Service) Seeds() [][]byte {
	s.seeds.mu.Lock()
	defer s.seeds.mu.Unlock()
	return append([][]byte(nil), s.seeds.seeds...)
}

// Shutdown kills every process the service started (DestroySandbox).
func (s *Service) Shutdown() {
	_, _ = s.svc.DestroySandbox(context.Background(), &agentapi.DestroySandboxRequest{})
}

// Spec is the OCI spec the container got after the agent adapted it.
func (s *Service) Spec(cid string) *specs.Spec { return s.runner.spec(cid) }

// Storages are the storage requests the agent accepted, in order.
func (s *Service) Storages() []*agentapi.Storage {
	s.mount.mu.Lock()
	defer s.mount.mu.Unlock()
	return append([]*agentapi.Storage(nil), s.mount.mounts...)
}

// Hostname is the hostname CreateSandbox set.
func (s *Service) Hostname() string {
	s.mount.mu.Lock()
	defer s.mount.mu.Unlock()
	return s.mount.hostname
}

// Paused says whether the container is frozen.
func (s *Service) Paused(cid string) bool {
	c, err := s.svc.lookup(cid)
	if err != nil {
		return false
	}
	hc, ok := c.rt.(*hostContainer)
	return ok && hc.isPaused()
}

// Resources are the container's resources after the last update.
func (s *Service) Resources(cid string) *specs.LinuxResources {
	c, err := s.svc.lookup(cid)
	if err != nil {
		return nil
	}
	hc, ok := c.rt.(*hostContainer)
	if !ok {
		return nil
	}
	hc.mu.Lock()
	defer hc.mu.Unlock()
	return hc.resources
}

// ClockOffset is how far the service's wall clock is ahead of the host's.
func (s *Service) ClockOffset() time.Duration { return s.clock.offset() }

// SetClockOffset moves the service's wall clock (drift, a resumed VM).
func (s *Service) SetClockOffset(d time.Duration) {
	s.clock.mu.Lock()
	s.clock.off = d
	s.clock.mu.Unlock()
}

// OOMKill kills the container's init as the kernel's OOM killer would,
// with the cgroup's notification and counter: the agent's own code reports
// it (GetOOMEvent, WaitProcess's OomKilled).
func (s *Service) OOMKill(cid string) bool {
	c, err := s.svc.lookup(cid)
	if err != nil {
		return false
	}
	hc, ok := c.rt.(*hostContainer)
	if ok {
		s.runner.oomKill(cid, hc)
	}
	return ok
}
