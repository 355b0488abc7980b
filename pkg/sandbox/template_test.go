package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd/mount"

	"github.com/kata-go/kata-go/internal/testenv"
	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hypervisor"
	"github.com/kata-go/kata-go/pkg/network"
	"github.com/kata-go/kata-go/pkg/vmtemplate"
)

// The template tests run the sandbox's own code (startVM, ensureTemplate,
// makeTemplate, Start) against in-package fakes: sandboxtest imports this
// package, so its fakes cannot be used here. What only a real QEMU does
// (loading the device state, the guest resuming) is the fake VM's Start
// succeeding or failing.

// tmplVMPid is the fake VM's VMM pid: above PID_MAX_LIMIT (1<<22), so the
// cleanup that kills recorded VM processes never touches a real one.
const tmplVMPid = 1<<22 + 4243

// tmplVM is a VM that starts at once, or fails to; made in MakeTemplate
// mode it writes the memory file a real one would map, and SaveTemplate
// writes a device state.
type tmplVM struct {
	cfg      hypervisor.Config
	startErr error
	// hungUp says whether the host has hung up on every agent dialled.
	hungUp func() bool

	// mu guards everything below.
	mu      sync.Mutex
	devices []hypervisor.Device
	started bool
	stopped bool
	saved   []string
	// savedLive says a save came while a host connection was open.
	savedLive bool
	exited    chan struct{}
	once      sync.Once
}

var (
	_ hypervisor.Hypervisor = (*tmplVM)(nil)
	_ hypervisor.Templater  = (*tmplVM)(nil)
)

func (v *tmplVM) AddDevice(d hypervisor.Device) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.devices = append(v.devices, d)
	return nil
}

func (v *tmplVM) Devices() []hypervisor.Device {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]hypervisor.Device(nil), v.devices...)
}

func (v *tmplVM) Start(context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.startErr != nil {
		return v.startErr
	}
	if v.cfg.Template.Mode == hypervisor.MakeTemplate {
		f, err := os.Create(v.cfg.Template.MemoryPath)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Truncate(int64(v.cfg.MemoryMiB) << 20); err != nil { // sparse
			return err
		}
	}
	v.started = true
	return nil
}

func (v *tmplVM) Stop(context.Context) error {
	v.mu.Lock()
	v.stopped = true
	v.mu.Unlock()
	v.once.Do(func() { close(v.exited) })
	return nil
}

func (v *tmplVM) SaveTemplate(_ context.Context, path string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cfg.Template.Mode != hypervisor.MakeTemplate || !v.started || v.stopped {
		return fmt.Errorf("fake VM: save template of a VM in mode %d (started %v, stopped %v)", v.cfg.Template.Mode, v.started, v.stopped)
	}
	v.saved = append(v.saved, path)
	if v.hungUp != nil && !v.hungUp() {
		v.savedLive = true
	}
	return os.WriteFile(path, []byte("fake device state"), 0o600)
}

func (v *tmplVM) state() (started, stopped bool, saved []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.started, v.stopped, append([]string(nil), v.saved...)
}

func (v *tmplVM) Exited() <-chan struct{} { return v.exited }
func (v *tmplVM) ExitErr() error          { return errors.New("fake VM stopped") }
func (v *tmplVM) Pids() []int             { return []int{tmplVMPid} }
func (v *tmplVM) AgentAddress() hypervisor.AgentAddress {
	return hypervisor.AgentAddress{Transport: hypervisor.TransportSerial, Path: filepath.Join(v.cfg.StateDir, "agent.sock"), Secret: v.cfg.AgentSecret}
}
func (v *tmplVM) Capabilities() hypervisor.Capabilities {
	return hypervisor.Capabilities{VirtioFS: true}
}
func (v *tmplVM) ConsoleLog() string     { return filepath.Join(v.cfg.StateDir, "console.log") }
func (v *tmplVM) ConsoleTail(int) string { return "" }

// tmplAgent is the guest agent's side of the calls Start, Stop and
// makeTemplate make; any other call panics (nil embedded Agent).
type tmplAgent struct {
	Agent
	addr      hypervisor.AgentAddress
	reseedErr error

	// mu guards everything below.
	mu       sync.Mutex
	calls    []string
	seeds    [][]byte
	storages []*agentapi.Storage
	ifaces   []*agentapi.UpdateInterfaceRequest
	closed   chan struct{}
	once     sync.Once
}

func newTmplAgent(addr hypervisor.AgentAddress) *tmplAgent {
	return &tmplAgent{addr: addr, closed: make(chan struct{})}
}

func (a *tmplAgent) record(c string) {
	a.mu.Lock()
	a.calls = append(a.calls, c)
	a.mu.Unlock()
}

func (a *tmplAgent) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

func (a *tmplAgent) Seeds() [][]byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][]byte(nil), a.seeds...)
}

func (a *tmplAgent) SyncClock(context.Context, *agentapi.SyncClockRequest) (*agentapi.SyncClockResponse, error) {
	a.record("SyncClock")
	return &agentapi.SyncClockResponse{GuestUnixNs: time.Now().UnixNano()}, nil
}

func (a *tmplAgent) ReseedRandom(_ context.Context, r *agentapi.ReseedRandomRequest) (*agentapi.Empty, error) {
	a.record("ReseedRandom")
	a.mu.Lock()
	a.seeds = append(a.seeds, append([]byte(nil), r.Seed...))
	a.mu.Unlock()
	if a.reseedErr != nil {
		return nil, a.reseedErr
	}
	return &agentapi.Empty{}, nil
}

func (a *tmplAgent) CreateSandbox(_ context.Context, r *agentapi.CreateSandboxRequest) (*agentapi.Empty, error) {
	a.record("CreateSandbox")
	a.mu.Lock()
	a.storages = append(a.storages, r.Storages...)
	a.mu.Unlock()
	return &agentapi.Empty{}, nil
}

func (a *tmplAgent) UpdateInterface(_ context.Context, r *agentapi.UpdateInterfaceRequest) (*agentapi.Interface, error) {
	a.record("UpdateInterface")
	a.mu.Lock()
	a.ifaces = append(a.ifaces, r)
	a.mu.Unlock()
	return &agentapi.Interface{Name: fmt.Sprintf("eth%d", len(a.Calls())), HwAddr: r.Interface.HwAddr}, nil
}

func (a *tmplAgent) UpdateRoutes(context.Context, *agentapi.UpdateRoutesRequest) (*agentapi.Empty, error) {
	a.record("UpdateRoutes")
	return &agentapi.Empty{}, nil
}

func (a *tmplAgent) DestroySandbox(context.Context, *agentapi.DestroySandboxRequest) (*agentapi.Empty, error) {
	a.record("DestroySandbox")
	return &agentapi.Empty{}, nil
}

func (a *tmplAgent) PrepareTemplate(context.Context, *agentapi.Empty) (*agentapi.Empty, error) {
	a.record("PrepareTemplate")
	return &agentapi.Empty{}, nil
}

func (a *tmplAgent) Closed() <-chan struct{} { return a.closed }
func (a *tmplAgent) Close() error {
	a.once.Do(func() { close(a.closed) })
	return nil
}

// tmplFS makes the share's directories and mounts nothing.
type tmplFS struct{}

func (tmplFS) PrepareState(dir string) error {
	for _, d := range []string{hostTreeName, exportName} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	return nil
}
func (tmplFS) MountAll([]mount.Mount, Target) error { return errors.New("tmplFS: no mounts") }
func (tmplFS) Bind(string, Target, Access) error    { return errors.New("tmplFS: no mounts") }
func (tmplFS) IsTmpfs(string) bool                  { return false }
func (tmplFS) HasSubmounts(string) (bool, error)    { return false, nil }

// tmplEnv hands out fake VMs and agents and keeps them for the checks.
type tmplEnv struct {
	// newErr fails NewHypervisor for VMs of that mode; startErr fails
	// their Start.
	newErr    map[hypervisor.TemplateMode]error
	startErr  map[hypervisor.TemplateMode]error
	reseedErr error

	// mu guards vms and agents.
	mu     sync.Mutex
	vms    []*tmplVM
	agents []*tmplAgent
}

func (e *tmplEnv) deps() Deps {
	return Deps{
		NewHypervisor: func(c hypervisor.Config) (hypervisor.Hypervisor, error) {
			if err := e.newErr[c.Template.Mode]; err != nil {
				return nil, err
			}
			vm := &tmplVM{cfg: c, startErr: e.startErr[c.Template.Mode], hungUp: e.hungUp, exited: make(chan struct{})}
			e.mu.Lock()
			e.vms = append(e.vms, vm)
			e.mu.Unlock()
			return vm, nil
		},
		DialAgent: func(_ context.Context, addr hypervisor.AgentAddress) (Agent, error) {
			a := newTmplAgent(addr)
			a.reseedErr = e.reseedErr
			e.mu.Lock()
			e.agents = append(e.agents, a)
			e.mu.Unlock()
			return a, nil
		},
		HostFS: tmplFS{},
		WireNetwork: func(netns string, _ network.Model) (*network.Pod, error) {
			return &network.Pod{NetNS: netns, Model: network.None}, nil
		},
	}
}

// hungUp says whether every agent connection made is closed.
func (e *tmplEnv) hungUp() bool {
	for _, a := range e.Agents() {
		select {
		case <-a.Closed():
		default:
			return false
		}
	}
	return true
}

func (e *tmplEnv) VMs() []*tmplVM {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*tmplVM(nil), e.vms...)
}

func (e *tmplEnv) Agents() []*tmplAgent {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*tmplAgent(nil), e.agents...)
}

// noVMDeps fail the test if anything boots a VM or dials an agent.
func noVMDeps(t *testing.T) Deps {
	return Deps{
		NewHypervisor: func(c hypervisor.Config) (hypervisor.Hypervisor, error) {
			t.Errorf("a VM was made (template mode %d)", c.Template.Mode)
			return nil, errors.New("no VM in this test")
		},
		DialAgent: func(context.Context, hypervisor.AgentAddress) (Agent, error) {
			t.Error("an agent was dialled")
			return nil, errors.New("no agent in this test")
		},
		HostFS: tmplFS{},
	}
}

// logBuf is a log sink the sandbox's goroutines may write to.
type logBuf struct {
	mu sync.Mutex // guards b
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLog() (*slog.Logger, *logBuf) {
	b := &logBuf{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// tmplConfig is a config with templates on, a store in a temporary
// directory and stand-in QEMU, kernel and initrd files (the key identifies
// them by stat).
func tmplConfig(t *testing.T) config.Config {
	t.Helper()
	dir := t.TempDir()
	cfg := config.Default()
	for _, f := range []struct {
		p    *string
		name string
	}{{&cfg.Hypervisor.Path, "qemu"}, {&cfg.Hypervisor.Kernel, "vmlinux"}, {&cfg.Hypervisor.Initrd, "initrd"}} {
		*f.p = filepath.Join(dir, f.name)
		if err := os.WriteFile(*f.p, []byte(f.name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg.Hypervisor.Accelerator = "tcg" // no dependence on this host's /dev/kvm
	cfg.Agent.Transport = "serial"
	cfg.Factory.EnableTemplate = true
	cfg.Factory.TemplatePath = filepath.Join(testenv.DiskTempDir(t), "templates") // never tmpfs
	return cfg
}

var podSecret = []byte("pod secret pod secret pod secret")

// podHC is the hypervisor config Start gives a pod of cfg's base size.
func podHC(t *testing.T, cfg config.Config, stateDir string, log *slog.Logger) hypervisor.Config {
	t.Helper()
	size, err := vmSize(cfg.Hypervisor.VCPUs, cfg.Hypervisor.MemoryMiB, nil)
	if err != nil {
		t.Fatal(err)
	}
	return hypervisorConfig(cfg, size, hypervisor.TransportSerial, stateDir, podSecret, log)
}

// seedTemplate puts a template for a pod of cfg's base size with nics NICs
// in the store without booting anything.
func seedTemplate(t *testing.T, cfg config.Config, nics int) *vmtemplate.Template {
	t.Helper()
	k, err := templateKey(podHC(t, cfg, t.TempDir(), slog.New(slog.DiscardHandler)), nics)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("template secret template secret!")
	tmpl, err := vmtemplate.Store{Dir: cfg.Factory.TemplatePath}.Create(k, secret, func(mem, state string, _ []byte) error {
		f, err := os.Create(mem)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := f.Truncate(int64(k.MemoryMiB) << 20); err != nil {
			return err
		}
		return os.WriteFile(state, []byte("seeded device state"), 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// podTaps are two NICs of a pod, each with an open file standing in for
// its tap queue.
func podTaps(t *testing.T) []hypervisor.NetTap {
	t.Helper()
	var taps []hypervisor.NetTap
	for i := range 2 {
		f, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		taps = append(taps, hypervisor.NetTap{ID: fmt.Sprintf("net%d", i), MAC: fmt.Sprintf("52:54:00:aa:bb:%02x", i), FDs: []*os.File{f}})
	}
	return taps
}

// vmSandbox is the part of a Sandbox startVM uses.
func vmSandbox(t *testing.T, deps Deps, log *slog.Logger) *Sandbox {
	return &Sandbox{ID: "sb", stateDir: t.TempDir(), log: log, deps: deps, sharedFS: string(hypervisor.SharedFSVirtioFS)}
}

func fakeTemplate() *vmtemplate.Template {
	return &vmtemplate.Template{Dir: "/tmpl/abc", Memory: "/tmpl/abc/memory", State: "/tmpl/abc/state", Secret: []byte("template secret template secret!")}
}

// A restore that fails, at any step, is logged and the pod's VM boots
// cold: as configured (virtio-fs, the pod's secret, the pod's MACs), not
// as a half-restored clone.
func TestStartVMFailedRestoreBootsCold(t *testing.T) {
	for _, tc := range []struct {
		name string
		env  *tmplEnv
	}{
		{"start fails", &tmplEnv{startErr: map[hypervisor.TemplateMode]error{hypervisor.FromTemplate: errors.New("fake: migrate-incoming failed")}}},
		{"new fails", &tmplEnv{newErr: map[hypervisor.TemplateMode]error{hypervisor.FromTemplate: errors.New("fake: migrate-incoming failed")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := newLog()
			s := vmSandbox(t, tc.env.deps(), log)
			cfg := tmplConfig(t)
			hc := podHC(t, cfg, s.stateDir, log)
			taps := podTaps(t)
			tmpl := fakeTemplate()
			vm, err := s.startVM(context.Background(), hc, tmpl, taps)
			if err != nil {
				t.Fatalf("a failed restore failed the pod: %v", err)
			}
			vms := tc.env.VMs()
			if len(vms) == 0 || vm != vms[len(vms)-1] {
				t.Fatalf("startVM returned %v, not the last VM made (%d made)", vm, len(vms))
			}
			cold := vms[len(vms)-1]
			if started, _, _ := cold.state(); !started {
				t.Fatal("the cold VM was not started")
			}
			if cold.cfg.Template.Mode != hypervisor.NoTemplate || cold.cfg.Template.MemoryPath != "" || cold.cfg.Template.StatePath != "" {
				t.Fatalf("the cold VM has template config %+v", cold.cfg.Template)
			}
			if !bytes.Equal(cold.cfg.AgentSecret, podSecret) {
				t.Fatalf("the cold VM's agent secret is %q, want the pod's", cold.cfg.AgentSecret)
			}
			if s.Restored() {
				t.Fatal("Restored() after a failed restore")
			}
			if s.sharedFS != string(hypervisor.SharedFSVirtioFS) {
				t.Fatalf("shared fs %q after a failed restore, want the configured virtio-fs", s.sharedFS)
			}
			devs := cold.Devices()
			want := []hypervisor.Device{
				hypervisor.SharedDir{Tag: shareTag, HostPath: filepath.Join(s.stateDir, exportName), Type: hypervisor.SharedFSVirtioFS},
				taps[0], taps[1],
			}
			if !reflect.DeepEqual(devs, want) {
				t.Fatalf("cold VM devices:\n got %+v\nwant %+v", devs, want)
			}
			out := logs.String()
			if !strings.Contains(out, "VM template restore failed, booting cold") || !strings.Contains(out, "fake: migrate-incoming failed") || !strings.Contains(out, tmpl.Dir) {
				t.Fatalf("no log line saying why the restore failed:\n%s", out)
			}
			if strings.Contains(out, "VM restored from template") {
				t.Fatalf("a failed restore logged as a restore:\n%s", out)
			}
		})
	}
}

// With no template startVM boots exactly one cold VM.
func TestStartVMWithoutTemplate(t *testing.T) {
	env := &tmplEnv{}
	log, logs := newLog()
	s := vmSandbox(t, env.deps(), log)
	if _, err := s.startVM(context.Background(), podHC(t, tmplConfig(t), s.stateDir, log), nil, nil); err != nil {
		t.Fatal(err)
	}
	if vms := env.VMs(); len(vms) != 1 || vms[0].cfg.Template.Mode != hypervisor.NoTemplate {
		t.Fatalf("%d VMs made without a template", len(vms))
	}
	if s.Restored() || strings.Contains(logs.String(), "template") {
		t.Fatalf("restored %v, log:\n%s", s.Restored(), logs.String())
	}
}

// A working restore gives the clone the template's secret and files, and
// the devices in the template's order: the share over 9p, then the NICs
// with the template's MACs but the pod's tap fds.
func TestStartVMRestoresFromTemplate(t *testing.T) {
	env := &tmplEnv{}
	log, logs := newLog()
	s := vmSandbox(t, env.deps(), log)
	hc := podHC(t, tmplConfig(t), s.stateDir, log)
	taps := podTaps(t)
	tmpl := fakeTemplate()
	vm, err := s.startVM(context.Background(), hc, tmpl, taps)
	if err != nil {
		t.Fatal(err)
	}
	vms := env.VMs()
	if len(vms) != 1 || vm != vms[0] {
		t.Fatalf("%d VMs made for one restore", len(vms))
	}
	clone := vms[0]
	if started, _, _ := clone.state(); !started {
		t.Fatal("the clone was not started")
	}
	if !s.Restored() {
		t.Fatal("Restored() is false after a restore")
	}
	if s.sharedFS != string(hypervisor.SharedFS9P) {
		t.Fatalf("a clone's shared fs is %q, want 9p", s.sharedFS)
	}
	if !bytes.Equal(clone.cfg.AgentSecret, tmpl.Secret) {
		t.Fatalf("the clone's agent secret is %q, want the template's %q", clone.cfg.AgentSecret, tmpl.Secret)
	}
	if got := clone.AgentAddress().Secret; !bytes.Equal(got, tmpl.Secret) {
		t.Fatalf("the host would dial the clone with secret %q", got)
	}
	wantT := hypervisor.TemplateConfig{Mode: hypervisor.FromTemplate, MemoryPath: tmpl.Memory, StatePath: tmpl.State}
	if clone.cfg.Template != wantT {
		t.Fatalf("clone template config %+v, want %+v", clone.cfg.Template, wantT)
	}
	// Everything else is the pod's VM.
	rest, want := clone.cfg, hc
	rest.AgentSecret, rest.Template, want.AgentSecret = nil, hypervisor.TemplateConfig{}, nil
	if !reflect.DeepEqual(rest, want) {
		t.Fatalf("the clone's config differs from the pod's beyond secret and template:\n got %+v\nwant %+v", rest, want)
	}
	devs := clone.Devices()
	if len(devs) != 1+len(taps) {
		t.Fatalf("clone devices %+v", devs)
	}
	if sd, ok := devs[0].(hypervisor.SharedDir); !ok || sd != (hypervisor.SharedDir{Tag: shareTag, HostPath: filepath.Join(s.stateDir, exportName), Type: hypervisor.SharedFS9P}) {
		t.Fatalf("first device %+v, want the pod's export over 9p", devs[0])
	}
	for i, d := range devs[1:] {
		nt, ok := d.(hypervisor.NetTap)
		if !ok {
			t.Fatalf("device %d is %T, want a NIC", i+1, d)
		}
		if nt.ID != fmt.Sprintf("net%d", i) || nt.MAC != templateMAC(i) {
			t.Fatalf("NIC %d is %s %s, want net%d with the template's MAC %s", i, nt.ID, nt.MAC, i, templateMAC(i))
		}
		if len(nt.FDs) != 1 || nt.FDs[0] != taps[i].FDs[0] {
			t.Fatalf("NIC %d does not carry the pod's tap fd", i)
		}
	}
	// The pod's own taps keep their MACs (the agent sets them in the guest).
	for i, tp := range taps {
		if tp.MAC != fmt.Sprintf("52:54:00:aa:bb:%02x", i) {
			t.Fatalf("the pod's tap %d was changed to %s", i, tp.MAC)
		}
	}
	if !strings.Contains(logs.String(), "VM restored from template") {
		t.Fatalf("no restore log line:\n%s", logs.String())
	}
}

// A restored guest's NICs start with the template's MACs: the agent is
// told which NIC to give the pod's MAC by its current (template) MAC. A
// cold guest's NICs already have the pod's.
func TestGuestNICsGetThePodsMACs(t *testing.T) {
	for _, restored := range []bool{true, false} {
		a := newTmplAgent(hypervisor.AgentAddress{})
		s := &Sandbox{restored: restored, agent: a, dead: make(chan struct{}), log: slog.New(slog.DiscardHandler), net: &network.Pod{
			Endpoints: []network.Endpoint{{Veth: "veth0", MAC: "52:54:00:00:00:01", MTU: 1500}, {Veth: "veth1", MAC: "52:54:00:00:00:02", MTU: 1500}},
		}}
		if err := s.configureGuestNetwork(context.Background()); err != nil {
			t.Fatal(err)
		}
		a.mu.Lock()
		reqs := a.ifaces
		a.mu.Unlock()
		if len(reqs) != 2 {
			t.Fatalf("restored %v: %d interface updates", restored, len(reqs))
		}
		for i, r := range reqs {
			want := ""
			if restored {
				want = templateMAC(i)
			}
			if r.CurrentHwAddr != want || r.Interface.HwAddr != s.net.Endpoints[i].MAC {
				t.Fatalf("restored %v: NIC %d: current %q -> %q, want %q -> %q", restored, i, r.CurrentHwAddr, r.Interface.HwAddr, want, s.net.Endpoints[i].MAC)
			}
		}
	}
}

// Templates need the serial transport (a vhost-vsock guest keeps the CID
// it read at boot); any other is refused by name before anything is made.
func TestEnsureTemplateRefusesNonSerialTransport(t *testing.T) {
	cfg := tmplConfig(t)
	for _, tr := range []hypervisor.Transport{hypervisor.TransportVsock, hypervisor.TransportHybridVsock} {
		hc := podHC(t, cfg, t.TempDir(), slog.New(slog.DiscardHandler))
		hc.Transport = tr
		tmpl, err := ensureTemplate(context.Background(), cfg, hc, 0, noVMDeps(t))
		if err == nil || tmpl != nil {
			t.Fatalf("transport %s: template %v, err %v", tr, tmpl, err)
		}
		if !strings.Contains(err.Error(), string(tr)) {
			t.Fatalf("transport %s: error %q does not name it", tr, err)
		}
		if got, why := templateFor(context.Background(), cfg, hc, 0, noVMDeps(t)); got != nil || !strings.Contains(why, string(tr)) {
			t.Fatalf("transport %s: templateFor gave %v, %q", tr, got, why)
		}
	}
	if _, err := os.Stat(cfg.Factory.TemplatePath); !os.IsNotExist(err) {
		t.Fatalf("the store was touched for a refused transport: %v", err)
	}
}

// holdMaker takes the store's maker lock for cfg's pod shape the way
// another shim would: its Create runs a maker that waits to be released.
// The returned func releases it and waits for its Create to end.
func holdMaker(t *testing.T, cfg config.Config, nics int) func() {
	t.Helper()
	k, err := templateKey(podHC(t, cfg, t.TempDir(), slog.New(slog.DiscardHandler)), nics)
	if err != nil {
		t.Fatal(err)
	}
	entered, release, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		_, err := vmtemplate.Store{Dir: cfg.Factory.TemplatePath}.Create(k, podSecret, func(string, string, []byte) error {
			close(entered)
			<-release
			return errors.New("the other maker gave up")
		})
		done <- err
	}()
	select {
	case <-entered:
	case err := <-done:
		t.Fatalf("the other maker did not get the lock: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("the other maker never started")
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			close(release)
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// A pod that finds another shim making its template does not wait for it:
// it gets ErrBusy at once and boots cold.
func TestEnsureTemplateBusyMakerDoesNotWait(t *testing.T) {
	cfg := tmplConfig(t)
	release := holdMaker(t, cfg, 0)
	hc := podHC(t, cfg, t.TempDir(), slog.New(slog.DiscardHandler))
	type result struct {
		t   *vmtemplate.Template
		err error
	}
	got := make(chan result, 1)
	began := time.Now()
	go func() {
		tmpl, err := ensureTemplate(context.Background(), cfg, hc, 0, noVMDeps(t))
		got <- result{tmpl, err}
	}()
	var r result
	select {
	case r = <-got:
	case <-time.After(5 * time.Second):
		release() // unblocks a lock wait, if that is what hangs
		t.Fatal("ensureTemplate waited for the other maker")
	}
	if took := time.Since(began); took > time.Second {
		t.Errorf("ensureTemplate took %v with the lock held elsewhere", took)
	}
	if r.t != nil || !errors.Is(r.err, vmtemplate.ErrBusy) {
		t.Fatalf("with the lock held elsewhere: template %v, err %v; want ErrBusy", r.t, r.err)
	}
	if !strings.Contains(r.err.Error(), "no template for this VM yet") {
		t.Fatalf("busy error %q does not say why a template was wanted", r.err)
	}
	if tmpl, why := templateFor(context.Background(), cfg, hc, 0, noVMDeps(t)); tmpl != nil || !strings.Contains(why, vmtemplate.ErrBusy.Error()) {
		t.Fatalf("templateFor while busy: %v, %q", tmpl, why)
	}
}

// The whole start with the maker lock held elsewhere: the pod boots cold
// with the configured share and says why.
func TestStartBootsColdWhileAnotherShimMakesTheTemplate(t *testing.T) {
	cfg := tmplConfig(t)
	release := holdMaker(t, cfg, 0)
	env := &tmplEnv{}
	log, logs := newLog()
	type result struct {
		s   *Sandbox
		err error
	}
	got := make(chan result, 1)
	go func() {
		s, err := Start(context.Background(), Options{ID: "busy", StateDir: filepath.Join(t.TempDir(), "sb"), Config: cfg, Logger: log, Deps: env.deps()})
		got <- result{s, err}
	}()
	var r result
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		release()
		r = <-got
		if r.err == nil {
			_ = r.s.Stop(context.Background())
		}
		t.Fatal("the pod's start waited for the other maker")
	}
	s, err := r.s, r.err
	if err != nil {
		t.Fatalf("a busy template maker failed the pod: %v", err)
	}
	defer s.Stop(context.Background())
	if s.Restored() {
		t.Fatal("restored while no template exists")
	}
	vms := env.VMs()
	if len(vms) != 1 || vms[0].cfg.Template.Mode != hypervisor.NoTemplate {
		t.Fatalf("%d VMs; want one cold boot", len(vms))
	}
	if out := logs.String(); !strings.Contains(out, "VM boots cold") || !strings.Contains(out, "another shim is making") {
		t.Fatalf("no log line saying why the pod boots cold:\n%s", out)
	}
	a := env.Agents()[0]
	if calls := a.Calls(); indexOf(calls, "CreateSandbox") < 0 {
		t.Fatalf("cold pod's agent calls: %v", calls)
	}
	a.mu.Lock()
	st := a.storages
	a.mu.Unlock()
	if len(st) != 1 || st[0].Driver != "virtiofs" {
		t.Fatalf("cold pod's guest share: %+v, want virtiofs", st)
	}
}

// A template that is there is found and used as it is: nothing boots.
func TestEnsureTemplateFindsTheOneThere(t *testing.T) {
	cfg := tmplConfig(t)
	made := seedTemplate(t, cfg, 2)
	hc := podHC(t, cfg, t.TempDir(), slog.New(slog.DiscardHandler))
	for range 2 {
		got, err := ensureTemplate(context.Background(), cfg, hc, 2, noVMDeps(t))
		if err != nil {
			t.Fatal(err)
		}
		if got.Dir != made.Dir || got.Memory != made.Memory || got.State != made.State || !bytes.Equal(got.Secret, made.Secret) {
			t.Fatalf("found %+v, made %+v", got, made)
		}
	}
	// Another shape (one NIC fewer) is another template.
	if _, err := (vmtemplate.Store{Dir: cfg.Factory.TemplatePath}).Lookup(mustKey(t, hc, 1)); !errors.Is(err, vmtemplate.ErrNone) {
		t.Fatalf("a 1-NIC VM found the 2-NIC template: %v", err)
	}
}

func mustKey(t *testing.T, hc hypervisor.Config, nics int) vmtemplate.Key {
	t.Helper()
	k, err := templateKey(hc, nics)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Making a template boots a VM in MakeTemplate mode with the template's
// memory file and secret, the same devices in the same order as a clone
// (with no tap fds), asks the agent to spare the coming hang-up, saves
// the state and stops the VM; the template is then found.
func TestEnsureTemplateMakesOneLikeItsClones(t *testing.T) {
	cfg := tmplConfig(t)
	env := &tmplEnv{}
	log, logs := newLog()
	hc := podHC(t, cfg, t.TempDir(), log)
	tmpl, err := ensureTemplate(context.Background(), cfg, hc, 2, env.deps())
	if err != nil {
		t.Fatal(err)
	}
	vms, agents := env.VMs(), env.Agents()
	if len(vms) != 1 || len(agents) != 1 {
		t.Fatalf("%d VMs and %d agents to make one template", len(vms), len(agents))
	}
	maker := vms[0]
	if maker.cfg.Template.Mode != hypervisor.MakeTemplate || filepath.Base(maker.cfg.Template.MemoryPath) != "memory" {
		t.Fatalf("template VM config %+v", maker.cfg.Template)
	}
	if !bytes.Equal(maker.cfg.AgentSecret, tmpl.Secret) || bytes.Equal(tmpl.Secret, podSecret) {
		t.Fatalf("template VM secret %q, template's %q (pod's %q)", maker.cfg.AgentSecret, tmpl.Secret, podSecret)
	}
	if !bytes.Equal(agents[0].addr.Secret, tmpl.Secret) {
		t.Fatal("the template's agent was dialled without the template's secret")
	}
	if maker.cfg.StateDir == hc.StateDir {
		t.Fatal("the template VM used the pod's state directory")
	}
	if _, err := os.Stat(maker.cfg.StateDir); !os.IsNotExist(err) {
		t.Fatalf("the template VM's run directory %s is left: %v", maker.cfg.StateDir, err)
	}
	started, stopped, saved := maker.state()
	if !started || !stopped || len(saved) != 1 || filepath.Base(saved[0]) != "state" {
		t.Fatalf("template VM started %v, stopped %v, saved %v", started, stopped, saved)
	}
	if calls := agents[0].Calls(); !reflect.DeepEqual(calls, []string{"PrepareTemplate"}) {
		t.Fatalf("template agent calls %v, want PrepareTemplate alone", calls)
	}
	maker.mu.Lock()
	live := maker.savedLive
	maker.mu.Unlock()
	if live {
		t.Fatal("the template was saved while the host was still connected to its agent: the saved guest would hold the maker's session")
	}
	devs := maker.Devices()
	if len(devs) != 3 {
		t.Fatalf("template VM devices %+v", devs)
	}
	if sd, ok := devs[0].(hypervisor.SharedDir); !ok || sd.Tag != shareTag || sd.Type != hypervisor.SharedFS9P {
		t.Fatalf("template VM's first device %+v, want the share over 9p", devs[0])
	}
	for i, d := range devs[1:] {
		if nt, ok := d.(hypervisor.NetTap); !ok || nt.ID != fmt.Sprintf("net%d", i) || nt.MAC != templateMAC(i) || len(nt.FDs) != 0 {
			t.Fatalf("template VM NIC %d: %+v", i, d)
		}
	}
	if !strings.Contains(logs.String(), "VM template made") {
		t.Fatalf("no log line for the made template:\n%s", logs.String())
	}

	// A clone of it gets the same device shapes in the same order.
	cloneEnv := &tmplEnv{}
	s := vmSandbox(t, cloneEnv.deps(), slog.New(slog.DiscardHandler))
	if _, err := s.startVM(context.Background(), hc, tmpl, podTaps(t)); err != nil {
		t.Fatal(err)
	}
	cdevs := cloneEnv.VMs()[0].Devices()
	if len(cdevs) != len(devs) {
		t.Fatalf("template has %d devices, clone %d", len(devs), len(cdevs))
	}
	for i := range devs {
		td, cd := devs[i], cdevs[i]
		switch td := td.(type) {
		case hypervisor.SharedDir:
			c, ok := cd.(hypervisor.SharedDir)
			if !ok || c.Tag != td.Tag || c.Type != td.Type {
				t.Fatalf("device %d: template %+v, clone %+v", i, td, cd)
			}
		case hypervisor.NetTap:
			c, ok := cd.(hypervisor.NetTap)
			if !ok || c.ID != td.ID || c.MAC != td.MAC {
				t.Fatalf("device %d: template %+v, clone %+v", i, td, cd)
			}
		}
	}

	// The next pod of this shape finds it.
	again, err := ensureTemplate(context.Background(), cfg, hc, 2, noVMDeps(t))
	if err != nil || again.Dir != tmpl.Dir {
		t.Fatalf("second lookup: %+v, %v", again, err)
	}
}

// A template that cannot be made never fails the pod: it boots cold and
// the log says why.
func TestStartBootsColdWhenMakingTheTemplateFails(t *testing.T) {
	cfg := tmplConfig(t)
	env := &tmplEnv{startErr: map[hypervisor.TemplateMode]error{hypervisor.MakeTemplate: errors.New("fake: template VM would not boot")}}
	log, logs := newLog()
	s, err := Start(context.Background(), Options{ID: "nomake", StateDir: filepath.Join(t.TempDir(), "sb"), Config: cfg, Logger: log, Deps: env.deps()})
	if err != nil {
		t.Fatalf("a failed template make failed the pod: %v", err)
	}
	defer s.Stop(context.Background())
	if s.Restored() {
		t.Fatal("restored from a template that was never made")
	}
	if out := logs.String(); !strings.Contains(out, "VM boots cold") || !strings.Contains(out, "fake: template VM would not boot") {
		t.Fatalf("no log line saying why:\n%s", out)
	}
	if ms, err := Templates(cfg); err != nil || len(ms) != 0 {
		t.Fatalf("templates after a failed make: %v, %v", ms, err)
	}
}

func indexOf(calls []string, c string) int {
	for i, x := range calls {
		if x == c {
			return i
		}
	}
	return -1
}

// startRestored starts a pod of cfg's base size that restores from the
// template in cfg's store.
func startRestored(t *testing.T, cfg config.Config, env *tmplEnv, id string) (*Sandbox, error) {
	t.Helper()
	log, _ := newLog()
	s, err := Start(context.Background(), Options{ID: id, StateDir: filepath.Join(t.TempDir(), id), Config: cfg, Logger: log, Deps: env.deps()})
	if err == nil {
		t.Cleanup(func() { _ = s.Stop(context.Background()) })
	}
	return s, err
}

// A restored guest holds the template's CRNG state, the same as every
// sibling's: before the pod's first real call it gets 64 fresh bytes, and
// no two pods get the same.
func TestRestoredPodIsReseededBeforeCreateSandbox(t *testing.T) {
	cfg := tmplConfig(t)
	tmpl := seedTemplate(t, cfg, 0)
	var seeds [][]byte
	for _, id := range []string{"pod-a", "pod-b"} {
		env := &tmplEnv{}
		s, err := startRestored(t, cfg, env, id)
		if err != nil {
			t.Fatal(err)
		}
		if !s.Restored() {
			t.Fatalf("%s: not restored with a template in the store", id)
		}
		vms := env.VMs()
		if len(vms) != 1 || vms[0].cfg.Template.Mode != hypervisor.FromTemplate || !bytes.Equal(vms[0].cfg.AgentSecret, tmpl.Secret) {
			t.Fatalf("%s: VMs %d, want one clone with the template's secret", id, len(vms))
		}
		a := env.Agents()[0]
		if !bytes.Equal(a.addr.Secret, tmpl.Secret) {
			t.Fatalf("%s: dialled the clone with secret %q", id, a.addr.Secret)
		}
		calls := a.Calls()
		r, c := indexOf(calls, "ReseedRandom"), indexOf(calls, "CreateSandbox")
		if r < 0 || c < 0 || r > c {
			t.Fatalf("%s: agent calls %v: want ReseedRandom before CreateSandbox", id, calls)
		}
		got := a.Seeds()
		if len(got) != 1 || len(got[0]) != 64 {
			t.Fatalf("%s: seeds %d (first of %d bytes), want one of 64", id, len(got), len(got[0]))
		}
		if bytes.Equal(got[0], make([]byte, 64)) {
			t.Fatalf("%s: an all-zero seed", id)
		}
		a.mu.Lock()
		st := a.storages
		a.mu.Unlock()
		if len(st) != 1 || st[0].Driver != "9p" {
			t.Fatalf("%s: a clone's guest share %+v, want 9p", id, st)
		}
		seeds = append(seeds, got[0])
	}
	if bytes.Equal(seeds[0], seeds[1]) {
		t.Fatal("two restored pods got the same seed")
	}
}

// A clone that cannot be reseeded would share its siblings' randomness:
// the start fails and the VM is stopped.
func TestRestoredPodThatCannotBeReseededFails(t *testing.T) {
	cfg := tmplConfig(t)
	seedTemplate(t, cfg, 0)
	env := &tmplEnv{reseedErr: errors.New("fake: RNDADDENTROPY: operation not permitted")}
	_, err := startRestored(t, cfg, env, "noseed")
	if err == nil || !strings.Contains(err.Error(), "reseed") || !strings.Contains(err.Error(), "RNDADDENTROPY") {
		t.Fatalf("start with a failed reseed: %v", err)
	}
	if calls := env.Agents()[0].Calls(); indexOf(calls, "CreateSandbox") >= 0 {
		t.Fatalf("the guest was used after the reseed failed: %v", calls)
	}
	if _, stopped, _ := env.VMs()[0].state(); !stopped {
		t.Fatal("the clone was left running")
	}
}

// A restore that fails inside Start boots the pod cold: the guest mounts
// the configured virtio-fs share, and the host dials it with the pod's
// secret.
func TestStartFallsBackWhenTheRestoreFails(t *testing.T) {
	cfg := tmplConfig(t)
	seedTemplate(t, cfg, 0)
	env := &tmplEnv{startErr: map[hypervisor.TemplateMode]error{hypervisor.FromTemplate: errors.New("fake: QEMU could not load the state")}}
	s, err := startRestored(t, cfg, env, "fallback")
	if err != nil {
		t.Fatal(err)
	}
	if s.Restored() {
		t.Fatal("Restored() after a failed restore")
	}
	vms := env.VMs()
	if len(vms) != 2 || vms[0].cfg.Template.Mode != hypervisor.FromTemplate || vms[1].cfg.Template.Mode != hypervisor.NoTemplate {
		t.Fatalf("%d VMs; want a failed clone then a cold boot", len(vms))
	}
	a := env.Agents()[0]
	if bytes.Equal(a.addr.Secret, vms[0].cfg.AgentSecret) {
		t.Fatal("the cold VM was dialled with the template's secret")
	}
	a.mu.Lock()
	st := a.storages
	a.mu.Unlock()
	if len(st) != 1 || st[0].Driver != "virtiofs" {
		t.Fatalf("cold pod's guest share %+v, want virtiofs", st)
	}
}
