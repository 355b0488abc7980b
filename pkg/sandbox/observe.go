package sandbox

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/containerd/errdefs"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hypervisor"
)

// What operators' tools (metrics, the debug shell) read of a sandbox.

// StateDir is the sandbox's private state directory (root only).
func (s *Sandbox) StateDir() string { return s.stateDir }

// DebugConsole reports whether the operator allowed debug shells into
// this sandbox's VM (agent.debug_console).
func (s *Sandbox) DebugConsole() bool { return s.cfg.Agent.DebugConsole }

// Accelerator is the accelerator the VM runs under and why ("" if the
// hypervisor does not say).
func (s *Sandbox) Accelerator() (string, string) {
	if a, ok := s.vm.(interface {
		Accelerator() (hypervisor.Accelerator, string)
	}); ok {
		name, why := a.Accelerator()
		return string(name), why
	}
	return "", ""
}

// GuestMetrics asks the agent for the guest's own figures.
// Bounded like every agent call: an agent that never answers must not hold
// a scrape (or its goroutine) open.
func (s *Sandbox) GuestMetrics(ctx context.Context) (*agentapi.GuestMetrics, error) {
	ctx, cancel := s.requestCtx(ctx)
	defer cancel()
	return s.agent.GetGuestMetrics(ctx, &agentapi.Empty{})
}

// Agent is the connection to the guest agent, for operator tools that
// need calls the sandbox does not wrap (the debug shell).
func (s *Sandbox) Agent() Agent { return s.agent }

// guestKernelParams are the configured ones plus the runtime's own: the
// agent serves debug shells only when this flag says the operator allowed
// them (config validation keeps kata_go.* out of configured parameters).
func guestKernelParams(cfg config.Config) []string {
	params := append([]string(nil), cfg.Hypervisor.KernelParams...)
	if cfg.Agent.DebugConsole {
		params = append(params, agentapi.DebugConsoleParam)
	}
	return params
}

// FindStateDir returns the state directory under root of the running
// sandbox id (state directories are named by a hash of the bundle path,
// which an operator does not know).
func FindStateDir(root, id string) (string, error) {
	dirs, err := filepath.Glob(filepath.Join(root, "*"))
	if err != nil {
		return "", err
	}
	for _, d := range dirs {
		if s, err := readState(d); err == nil && s.SandboxID == id {
			return d, nil
		}
	}
	return "", fmt.Errorf("sandbox %q: %w: no state directory under %s names it", id, errdefs.ErrNotFound, root)
}
