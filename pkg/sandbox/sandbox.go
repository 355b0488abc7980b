// Package sandbox is one pod: a VM, the connection to its agent and the
// containers running in it. It knows nothing of containerd's Task API.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/agentapi/channel"
	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hypervisor"
	"github.com/kata-go/kata-go/pkg/network"
	"github.com/kata-go/kata-go/pkg/vmtemplate"
)

// Guest paths and tags the host and agent agree on.
const (
	shareTag        = "kataShared"
	guestSharedRoot = "/run/kata-go/shared"
)

// Options create a sandbox.
type Options struct {
	ID       string
	StateDir string
	Config   config.Config
	// Spec of the first container (the pod's sandbox container under CRI):
	// its hostname and resource limits shape the VM.
	Spec   *specs.Spec
	Logger *slog.Logger
	Deps   Deps
	// ShimPlaced says containerd put the shim in a cgroup of its choice
	// (the shim_cgroup option): it stays there instead of joining the
	// pod's cgroup with its VM.
	ShimPlaced bool
}

// Sandbox is a running pod VM.
type Sandbox struct {
	ID       string
	stateDir string
	// tree is the host-only share tree; skel creates targets in it.
	tree string
	skel *skeleton
	cfg  config.Config
	vm   hypervisor.Hypervisor
	// restored says the VM came from a template; sharedFS is how the
	// pod's files reach it (a restored VM's is always 9p).
	restored bool
	sharedFS string
	size     Size
	// cgroup is the pod's host cgroup (nil: the spec names none).
	cgroup *podCgroup
	agent  Agent
	log    *slog.Logger
	deps   Deps

	// net is the pod's wired network namespace (nil: none).
	net *network.Pod

	// dead is closed once the VM or the agent connection is gone; deadErr
	// says why and is written before the close.
	dead    chan struct{}
	deadErr error

	// mu guards containers and stopped.
	mu         sync.Mutex
	containers map[string]*Container
	stopped    bool

	// Timings of the start, for the boot-phase benchmark.
	Phases Phases
}

// Phases are the host-side timestamps of a sandbox start.
type Phases struct {
	Begin, VMMSpawned, AgentReady time.Time
	// GuestAgentUptime is the guest's uptime when the agent began serving.
	GuestAgentUptime time.Duration
}

// Start boots the VM and connects to its agent.
func Start(ctx context.Context, o Options) (_ *Sandbox, retErr error) {
	begin := time.Now()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	// Every line about this pod, the guest's own included, names it.
	o.Logger = o.Logger.With("sandbox_id", o.ID)
	if o.Deps.NewHypervisor == nil {
		o.Deps = DefaultDeps()
	}
	cfg := o.Config
	if o.Spec != nil {
		if err := cfg.ApplyAnnotations(o.Spec.Annotations); err != nil {
			return nil, err
		}
	}
	size, err := vmSize(cfg.Hypervisor.VCPUs, cfg.Hypervisor.MemoryMiB, o.Spec)
	if err != nil {
		return nil, err
	}
	vcpus, mem := size.VCPUs, size.MemoryMiB
	if err := checkHostMemory(mem); err != nil {
		return nil, err
	}
	o.Logger.Info("VM size", "sandbox", o.ID, "vcpus", vcpus, "memory_mib", mem, "rule", size.Rule, "why", size.Why)
	transport, err := pickTransport(cfg.Agent.Transport)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("create sandbox state: %w", err)
	}
	if err := os.Chmod(o.StateDir, 0o700); err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			if err := Cleanup(o.StateDir); err != nil {
				o.Logger.Warn("cleanup after failed start", "err", err)
			}
		}
	}()
	if err := o.Deps.HostFS.PrepareState(o.StateDir); err != nil {
		return nil, fmt.Errorf("prepare sandbox state: %w", err)
	}
	tree := filepath.Join(o.StateDir, hostTreeName)
	skel, err := openSkeleton(tree)
	if err != nil {
		return nil, err
	}
	defer func() {
		if retErr != nil {
			skel.close()
		}
	}()
	// A fresh secret per pod: the agent serves only a connection that
	// proves it holds it (pkg/agentapi/channel).
	secret, err := channel.NewSecret()
	if err != nil {
		return nil, err
	}
	h := cfg.Hypervisor
	hc := hypervisorConfig(cfg, size, transport, o.StateDir, secret, o.Logger)
	netns := netnsOf(o.Spec)
	pod, err := o.Deps.WireNetwork(netns, network.Model(cfg.Runtime.NetworkModel))
	if err != nil {
		return nil, err
	}
	// Everything made on the host is recorded on disk before anything else
	// can fail, so one path (Cleanup, from that record) undoes it: after a
	// failed start, at Stop, and in `shim delete` after a crash.
	state := diskState{SandboxID: o.ID, CgroupsPath: cgroupsPathOf(o.Spec), NetNS: netns, NetworkModel: cfg.Runtime.NetworkModel, GuestLinkAddr: pod.GuestLinkAddr}
	for _, ep := range pod.Endpoints {
		state.Taps = append(state.Taps, ep.Tap)
		state.Veths = append(state.Veths, ep.Veth)
	}
	if err := writeState(o.StateDir, state); err != nil {
		_ = pod.Close()
		return nil, fmt.Errorf("write sandbox state: %w", err)
	}
	defer func() {
		if retErr != nil {
			pod.CloseFiles()
		}
	}()
	var taps []hypervisor.NetTap
	for i, ep := range pod.Endpoints {
		taps = append(taps, hypervisor.NetTap{ID: fmt.Sprintf("net%d", i), MAC: ep.MAC, FDs: []*os.File{ep.TapFile}})
	}
	var tmpl *vmtemplate.Template
	if cfg.Factory.EnableTemplate {
		var why string
		if tmpl, why = templateFor(ctx, cfg, hc, len(taps), o.Deps); tmpl == nil {
			o.Logger.Info("VM boots cold", "why", why)
		}
	}
	s := &Sandbox{
		ID: o.ID, stateDir: o.StateDir, tree: tree, skel: skel, cfg: cfg, size: size, log: o.Logger, deps: o.Deps, sharedFS: h.SharedFS,
		dead: make(chan struct{}), containers: map[string]*Container{}, net: pod,
	}
	s.Phases.Begin = begin
	s.cgroup, err = openPodCgroup(state.CgroupsPath, hostLimitMiB(h, mem), o.ShimPlaced, o.Logger)
	defer func() {
		if retErr != nil {
			_ = s.cgroup.leave() // before Cleanup removes the group
		}
	}()
	if err != nil {
		return nil, err
	}
	vm, err := s.startVM(ctx, hc, tmpl, taps)
	if err != nil {
		return nil, err
	}
	s.vm = vm
	s.Phases.VMMSpawned = time.Now()
	defer func() {
		if retErr != nil {
			_ = vm.Stop(context.Background())
		}
	}()
	for _, pid := range vm.Pids() {
		state.Processes = append(state.Processes, refFor(pid))
	}
	if err := writeState(o.StateDir, state); err != nil {
		return nil, fmt.Errorf("write sandbox state: %w", err)
	}
	if err := placeVM(vm.Pids(), s.cgroup, o.Spec); err != nil {
		return nil, err
	}
	if err := s.connect(ctx); err != nil {
		return nil, err
	}
	go s.watch()
	if err := s.startClock(ctx); err != nil {
		s.agent.Close()
		return nil, err
	}
	// The agent is untrusted from its first answer on: a guest that never
	// answers fails the start in bounded time.
	actx, cancel := s.createCtx(ctx)
	defer cancel()
	if s.restored {
		if err := s.reseed(actx); err != nil {
			s.agent.Close()
			return nil, err
		}
	}
	hostname := ""
	if o.Spec != nil {
		hostname = o.Spec.Hostname
	}
	if _, err := s.agent.CreateSandbox(actx, &agentapi.CreateSandboxRequest{
		SandboxId: o.ID, Hostname: hostname,
		Storages: []*agentapi.Storage{{Driver: guestFSDriver(s.sharedFS), Source: shareTag, MountPoint: guestSharedRoot}},
	}); err != nil {
		s.agent.Close()
		return nil, fmt.Errorf("create sandbox in guest: %w", s.explain(err))
	}
	if err := s.configureGuestNetwork(actx); err != nil {
		s.agent.Close()
		return nil, err
	}
	return s, nil
}

// netnsOf is the network namespace path the spec asks the container to
// join (CRI's pod namespace), "" if it makes its own or none.
func netnsOf(s *specs.Spec) string {
	if s == nil || s.Linux == nil {
		return ""
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			return n.Path
		}
	}
	return ""
}

// configureGuestNetwork gives the guest NICs the pod's addresses and routes.
func (s *Sandbox) configureGuestNetwork(ctx context.Context) error {
	names := map[string]string{} // veth -> guest name
	if s.net.LocalForwardErr != nil {
		s.log.Warn("port-forward to this pod will not work", "err", s.net.LocalForwardErr)
	}
	for i, ep := range s.net.Endpoints {
		var addrs []*agentapi.IPAddress
		for _, a := range ep.Addrs {
			addrs = append(addrs, &agentapi.IPAddress{Address: a})
		}
		if i == 0 && s.net.GuestLinkAddr != "" {
			addrs = append(addrs, &agentapi.IPAddress{Address: s.net.GuestLinkAddr})
		}
		req := &agentapi.UpdateInterfaceRequest{Interface: &agentapi.Interface{
			HwAddr: ep.MAC, Mtu: uint32(ep.MTU), Addresses: addrs,
		}}
		if s.restored {
			req.CurrentHwAddr = templateMAC(i)
		}
		r, err := s.agent.UpdateInterface(ctx, req)
		if err != nil {
			return fmt.Errorf("configure interface %s (%s) in guest: %w", ep.Veth, ep.MAC, s.explain(err))
		}
		// The name goes back to the guest only (in its routes); refuse
		// what no Linux interface name can be.
		name := r.GetName()
		if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \x00") {
			return fmt.Errorf("agent: configure interface %s (%s): %w: interface name %q", ep.Veth, ep.MAC, ErrBadAnswer, name)
		}
		names[ep.Veth] = name
	}
	var routes []*agentapi.Route
	for _, r := range s.net.Routes {
		routes = append(routes, &agentapi.Route{Destination: r.Dest, Gateway: r.Gateway, Device: names[r.Device], Source: r.Source, Scope: uint32(r.Scope)})
	}
	if len(routes) > 0 {
		if _, err := s.agent.UpdateRoutes(ctx, &agentapi.UpdateRoutesRequest{Routes: routes}); err != nil {
			return fmt.Errorf("configure routes in guest: %w", s.explain(err))
		}
	}
	return nil
}

func guestFSDriver(sharedFS string) string {
	if sharedFS == "9p" {
		return "9p"
	}
	return "virtiofs"
}

// pickTransport resolves "auto": vsock needs /dev/vhost-vsock on the host.
func pickTransport(t string) (hypervisor.Transport, error) {
	switch t {
	case "serial":
		return hypervisor.TransportSerial, nil
	case "vsock":
		if _, err := os.Stat("/dev/vhost-vsock"); err != nil {
			return "", fmt.Errorf("agent.transport vsock: %w", err)
		}
		return hypervisor.TransportVsock, nil
	}
	if _, err := os.Stat("/dev/vhost-vsock"); err == nil {
		return hypervisor.TransportVsock, nil
	}
	return hypervisor.TransportSerial, nil
}

// connect dials the agent, giving up early if the VM dies meanwhile.
func (s *Sandbox) connect(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, s.cfg.Agent.DialTimeout.Duration)
	defer cancel()
	go func() {
		select {
		case <-s.vm.Exited():
			cancel()
		case <-dctx.Done():
		}
	}()
	a, err := s.deps.DialAgent(dctx, s.vm.AgentAddress())
	if err != nil {
		select {
		case <-s.vm.Exited():
			// The VMM's exit error quotes the console's end already.
			return fmt.Errorf("VM exited before its agent answered: %v", s.vm.ExitErr())
		default:
		}
		return fmt.Errorf("connect to agent: %w%s", err, s.consoleTail())
	}
	s.agent = a
	s.Phases.AgentReady = time.Now()
	if c, ok := a.(interface {
		CheckResponse() *agentapi.CheckResponse
	}); ok && c.CheckResponse() != nil {
		s.Phases.GuestAgentUptime = time.Duration(c.CheckResponse().AgentStartUptimeNs)
	}
	s.log.Info("agent ready", "after", s.Phases.AgentReady.Sub(s.Phases.Begin))
	return nil
}

// consoleTail is the end of the guest console, to explain a failed boot:
// the hypervisor's sanitised copy, never raw guest bytes.
func (s *Sandbox) consoleTail() string {
	t := strings.TrimSpace(s.vm.ConsoleTail(8))
	if t == "" {
		return ""
	}
	return "; guest console: " + strings.ReplaceAll(t, "\n", " | ")
}

// watch notices the VM or the agent connection going away.
func (s *Sandbox) watch() {
	var why error
	select {
	case <-s.vm.Exited():
		why = fmt.Errorf("VM exited: %v", s.vm.ExitErr())
	case <-s.agent.Closed():
		why = errors.New("agent connection closed")
	}
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	s.deadErr = why
	close(s.dead)
	if !stopped {
		s.log.Error("sandbox died", "err", why)
		// Free the VM's helpers at once; the containers' mounts go when
		// containerd deletes the tasks (each exits with VMDiedStatus now).
		_ = s.vm.Stop(context.Background())
	}
}

// Dead is closed when the VM or its agent is gone.
func (s *Sandbox) Dead() <-chan struct{} { return s.dead }

// VMPids are the host processes of the VM.
func (s *Sandbox) VMPids() []int { return s.vm.Pids() }

// Stop ends the VM and frees everything on the host.
func (s *Sandbox) Stop(ctx context.Context) error {
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.stopped = true
	s.mu.Unlock()
	select {
	case <-s.dead:
	default:
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, _ = s.agent.DestroySandbox(dctx, &agentapi.DestroySandboxRequest{})
		cancel()
	}
	s.agent.Close()
	err := s.vm.Stop(ctx)
	s.net.CloseFiles()
	s.skel.close()
	if lerr := s.cgroup.leave(); lerr != nil {
		err = errors.Join(err, lerr)
	}
	if cerr := Cleanup(s.stateDir); cerr != nil {
		err = errors.Join(err, cerr)
	}
	return err
}

// WaitOOM long-polls the agent for the next OOM kill in the VM.
func (s *Sandbox) WaitOOM(ctx context.Context, r *agentapi.Empty) (*agentapi.OOMEvent, error) {
	return s.agent.GetOOMEvent(ctx, r)
}

// hypervisorConfig is the VM cfg describes, of the given size.
func hypervisorConfig(cfg config.Config, size Size, transport hypervisor.Transport, stateDir string, secret []byte, log *slog.Logger) hypervisor.Config {
	h := cfg.Hypervisor
	return hypervisor.Config{
		AgentSecret: secret,
		QEMUPath:    h.Path, VirtiofsdPath: h.VirtiofsdPath, Kernel: h.Kernel, Initrd: h.Initrd,
		KernelParams: guestKernelParams(cfg), MachineType: h.MachineType,
		Accelerator: hypervisor.Accelerator(h.Accelerator), VCPUs: size.VCPUs, MemoryMiB: size.MemoryMiB,
		Transport: transport, StateDir: stateDir, TBSizeMiB: h.TCGTBSizeMiB, CPUModel: h.CPUModel,
		Debug: cfg.Runtime.Debug, Logger: log,
	}
}
