package sandboxtest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/mount"

	"github.com/kata-go/kata-go/internal/agent"
	"github.com/kata-go/kata-go/internal/agent/agenttest"
	"github.com/kata-go/kata-go/pkg/hypervisor"
	"github.com/kata-go/kata-go/pkg/network"
	"github.com/kata-go/kata-go/pkg/sandbox"
)

// VMMPid is the host pid the fake VM reports for its VMM. No host process
// can have it (it is above Linux's PID_MAX_LIMIT, 1<<22), so cleanup,
// which kills the recorded VM processes, never touches a real one.
const VMMPid = 1<<22 + 4242

// Hypervisor is a VM that starts at once and ends when told (or killed).
type Hypervisor struct {
	Cfg hypervisor.Config
	// StartErr, if set, fails Start.
	StartErr error

	// mu guards devices, started and stopped.
	mu      sync.Mutex
	devices []hypervisor.Device
	started bool
	stopped bool
	exited  chan struct{}
	once    sync.Once
	// onKill, if set, runs when the VM dies (the agent connection drops).
	onKill func()
}

var _ hypervisor.Hypervisor = (*Hypervisor)(nil)

func (h *Hypervisor) AddDevice(d hypervisor.Device) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.devices = append(h.devices, d)
	return nil
}

// Devices are the devices added.
func (h *Hypervisor) Devices() []hypervisor.Device {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hypervisor.Device(nil), h.devices...)
}

func (h *Hypervisor) Start(context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.StartErr != nil {
		return h.StartErr
	}
	h.started = true
	return os.WriteFile(h.ConsoleLog(), []byte("fake console\n"), 0o600)
}

func (h *Hypervisor) Stop(context.Context) error {
	h.mu.Lock()
	h.stopped = true
	h.mu.Unlock()
	h.Kill()
	return nil
}

// Stopped reports whether Stop was called.
func (h *Hypervisor) Stopped() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stopped
}

// Kill makes the VM exit as if its process died.
func (h *Hypervisor) Kill() {
	h.once.Do(func() {
		close(h.exited)
		if h.onKill != nil {
			h.onKill()
		}
	})
}

func (h *Hypervisor) Exited() <-chan struct{} { return h.exited }
func (h *Hypervisor) ExitErr() error          { return errors.New("fake VM killed") }

// Pids are the VMM's, as QEMU's list its own process first.
func (h *Hypervisor) Pids() []int { return []int{VMMPid} }

func (h *Hypervisor) AgentAddress() hypervisor.AgentAddress {
	return hypervisor.AgentAddress{Transport: hypervisor.TransportSerial, Path: filepath.Join(h.Cfg.StateDir, "agent.sock")}
}
func (h *Hypervisor) Capabilities() hypervisor.Capabilities {
	return hypervisor.Capabilities{VirtioFS: true}
}
func (h *Hypervisor) ConsoleLog() string { return filepath.Join(h.Cfg.StateDir, "console.log") }

// ConsoleTail is what the fake guest printed.
func (h *Hypervisor) ConsoleTail(int) string { return "fake console" }

// HostFS records mounts instead of making them.
type HostFS struct {
	// mu guards binds and readOnly.
	mu       sync.Mutex
	binds    []string
	readOnly []string
}

var _ sandbox.HostFS = (*HostFS)(nil)

// PrepareState makes the share's two directories (no mounts: the unit
// tier runs without root).
func (f *HostFS) PrepareState(dir string) error {
	for _, d := range []string{"mounts", "shared"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}

func (f *HostFS) MountAll(mounts []mount.Mount, target sandbox.Target) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.binds = append(f.binds, "rootfs:"+target.Path)
	return nil
}

func (f *HostFS) Bind(source string, target sandbox.Target, a sandbox.Access) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.binds = append(f.binds, source+"->"+target.Path)
	switch a {
	case sandbox.ReadOnly:
		f.readOnly = append(f.readOnly, source)
	case sandbox.ReadOnlyRecursive:
		f.readOnly = append(f.readOnly, source+" (recursive)")
	}
	return nil
}

// ReadOnly lists the sources bound read-only ("(recursive)" appended for
// rro).
func (f *HostFS) ReadOnly() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.readOnly...)
}

// HasSubmounts says paths containing "submounts" have mounts below them.
func (f *HostFS) HasSubmounts(path string) (bool, error) {
	return strings.Contains(path, "submounts"), nil
}

// IsTmpfs says paths containing "tmpfs" are on a tmpfs.
func (f *HostFS) IsTmpfs(path string) bool { return strings.Contains(path, "tmpfs") }

// Mounts lists what was mounted.
func (f *HostFS) Mounts() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.binds...)
}

// Env bundles the parts of one sandbox.
type Env struct {
	// Agent is the real agent over an in-memory connection (Deps); nil
	// with FakeDeps.
	Agent *agenttest.Agent
	// Fake is the hand-written agent (FakeDeps), kept as the honest core
	// the hostile tests' lying agents bend; nil with Deps.
	Fake *Agent
	VM   *Hypervisor
	FS   *HostFS
}

// Deps returns sandbox dependencies around internal/agent's real service
// (fakes only at its edges: host processes, recorded guest mounts) with a
// fake VM and host mount layer; env.VM is set once the sandbox creates its
// VM, and the VM's death drops the agent connection as a real one does.
func Deps(t testing.TB, o agent.Options) (sandbox.Deps, *Env) {
	env := &Env{Agent: agenttest.New(t, o), FS: &HostFS{}}
	return sandbox.Deps{
		NewHypervisor: func(c hypervisor.Config) (hypervisor.Hypervisor, error) {
			env.VM = &Hypervisor{Cfg: c, exited: make(chan struct{}), onKill: env.Agent.Die}
			return env.VM, nil
		},
		DialAgent: func(context.Context, hypervisor.AgentAddress) (sandbox.Agent, error) { return env.Agent, nil },
		HostFS:    env.FS,
		WireNetwork: func(netns string, m network.Model) (*network.Pod, error) {
			return &network.Pod{NetNS: netns, Model: network.None}, nil
		},
	}, env
}

// FakeDeps returns sandbox dependencies backed by the hand-written agent.
// Only the hostile tests use it: their liars replace chosen answers of an
// agent whose every call they can intercept in process.
func FakeDeps(script func([]string) Behavior) (sandbox.Deps, *Env) {
	env := &Env{Fake: NewAgent(script), FS: &HostFS{}}
	return sandbox.Deps{
		NewHypervisor: func(c hypervisor.Config) (hypervisor.Hypervisor, error) {
			env.VM = &Hypervisor{Cfg: c, exited: make(chan struct{})}
			return env.VM, nil
		},
		DialAgent: func(context.Context, hypervisor.AgentAddress) (sandbox.Agent, error) { return env.Fake, nil },
		HostFS:    env.FS,
		WireNetwork: func(netns string, m network.Model) (*network.Pod, error) {
			return &network.Pod{NetNS: netns, Model: network.None}, nil
		},
	}, env
}
