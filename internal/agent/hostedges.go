package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// The host edges stand in for the guest's kernel-facing parts when the
// real service runs on the host, in unit tests of the agent and of the
// host above it (agenttest): containers are plain host processes, storage,
// hostname, DNS and sysctls are checked and recorded, and the wall clock
// is a private offset from the host's. Everything between the RPC and
// these edges is the agent's own code. Never used in a guest.

// hostExits delivers the exits of the host runner's processes.
type hostExits struct {
	// mu guards ch.
	mu sync.Mutex
	ch map[int]chan exitStatus
}

var _ exitSource = (*hostExits)(nil)

func newHostExits() *hostExits { return &hostExits{ch: map[int]chan exitStatus{}} }

func (f *hostExits) hold()    {}
func (f *hostExits) release() {}
func (f *hostExits) watch(pid int) <-chan exitStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.channel(pid)
}

func (f *hostExits) channel(pid int) chan exitStatus {
	c, ok := f.ch[pid]
	if !ok {
		c = make(chan exitStatus, 1)
		f.ch[pid] = c
	}
	return c
}

func (f *hostExits) deliver(pid int, ws syscall.WaitStatus) {
	f.mu.Lock()
	c := f.channel(pid)
	delete(f.ch, pid)
	f.mu.Unlock()
	c <- statusFromWait(unix.WaitStatus(ws))
}

// hostRunner runs containers as plain host processes: the "init" waits
// for a gate file before exec'ing its args, as a created container waits
// for start.
type hostRunner struct {
	dir   string
	exits *hostExits
	// command maps a process's args to the host command run for it.
	command func(args []string) []string

	// mu guards specs and ooms.
	mu    sync.Mutex
	specs map[string]*specs.Spec
	ooms  map[string]bool
}

var _ runner = (*hostRunner)(nil)

type hostContainer struct {
	r    *hostRunner
	gate string

	// oomCh is the container's OOM notification (the cgroup's, in a guest).
	oomCh    chan struct{}
	closeOOM sync.Once

	// mu guards cmds, initTTY, paused and resources.
	mu        sync.Mutex
	initTTY   bool
	cmds      []*hostProc
	paused    bool
	resources *specs.LinuxResources
}

var _ containerRuntime = (*hostContainer)(nil)

// hostProc is one process of a host container.
type hostProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once reaped
}

func (p *hostProc) pid() int { return p.cmd.Process.Pid }

func (p *hostProc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// spawn starts a process in process group group (0: a new one; a terminal
// always makes a new session). An init's death kills its group, as the end
// of a container's init ends its PID namespace; an exec without a terminal
// joins its init's group.
func (r *hostRunner) spawn(args []string, io *stdio, gate string, group int, init bool) (*hostProc, error) {
	if r.command != nil {
		args = r.command(args)
	}
	// libcontainer's init looks the binary up before it waits for start,
	// so a missing one fails the create (or the exec), as runc's does.
	if _, err := exec.LookPath(args[0]); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	script := `while [ ! -e "$0" ]; do sleep 0.01; done; exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, gate}, args...)...)
	var tty *os.File
	if io.tty {
		master, slave, err := pty.Open()
		if err != nil {
			return nil, err
		}
		defer slave.Close()
		tty = master
		cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true}
	} else {
		if io.childIn != nil {
			cmd.Stdin = io.childIn
		}
		cmd.Stdout, cmd.Stderr = io.childOut, io.childErr
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: group}
	}
	if err := cmd.Start(); err != nil {
		if tty != nil {
			tty.Close()
		}
		return nil, err
	}
	if tty != nil {
		io.setTerminal(tty, true)
	}
	p := &hostProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.done)
		r.exits.deliver(cmd.Process.Pid, cmd.ProcessState.Sys().(syscall.WaitStatus))
		if init {
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		}
	}()
	return p, nil
}

func (r *hostRunner) create(id string, spec *specs.Spec, io *stdio) (containerRuntime, int, error) {
	c := &hostContainer{r: r, gate: filepath.Join(r.dir, id+".gate"), oomCh: make(chan struct{}, 1)}
	if err := os.Remove(c.gate); err != nil && !os.IsNotExist(err) {
		return nil, 0, err
	}
	p, err := r.spawn(spec.Process.Args, io, c.gate, 0, true)
	if err != nil {
		return nil, 0, err
	}
	c.cmds = append(c.cmds, p)
	c.initTTY = io.tty
	r.mu.Lock()
	r.specs[id] = spec
	r.mu.Unlock()
	return c, p.pid(), nil
}

func (r *hostRunner) spec(id string) *specs.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.specs[id]
}

func (c *hostContainer) start() error { return os.WriteFile(c.gate, nil, 0o644) }

func (c *hostContainer) exec(p *specs.Process, io *stdio) (int, error) {
	c.mu.Lock()
	group := c.cmds[0].pid()
	if c.initTTY {
		group = 0 // the init leads a session of its own: no joining its group
	}
	c.mu.Unlock()
	hp, err := c.r.spawn(p.Args, io, c.gate, group, false)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.cmds = append(c.cmds, hp)
	c.mu.Unlock()
	return hp.pid(), nil
}

func (c *hostContainer) signal(sig unix.Signal, all bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, p := range c.cmds {
		if (i == 0 || all) && p.running() {
			_ = p.cmd.Process.Signal(sig)
		}
	}
	return nil
}

// pause and resume stop and continue every process, as the freezer does.
func (c *hostContainer) pause() error {
	c.mu.Lock()
	c.paused = true
	c.mu.Unlock()
	return c.signal(unix.SIGSTOP, true)
}

func (c *hostContainer) resume() error {
	c.mu.Lock()
	c.paused = false
	c.mu.Unlock()
	return c.signal(unix.SIGCONT, true)
}

func (c *hostContainer) isPaused() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused
}

func (c *hostContainer) update(r *specs.LinuxResources) error {
	c.mu.Lock()
	c.resources = r
	c.mu.Unlock()
	return nil
}

func (c *hostContainer) pids() ([]int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []int
	for _, p := range c.cmds {
		if p.running() {
			out = append(out, p.pid())
		}
	}
	return out, nil
}

// oom delivers what oomKill sends, as a cgroup's notification would.
func (c *hostContainer) oom() (<-chan struct{}, error) { return c.oomCh, nil }

// oomKill plays the kernel's OOM killer on the container: its init dies of
// SIGKILL, the cgroup's oom_kill counter moves, the notification fires.
func (r *hostRunner) oomKill(id string, c *hostContainer) {
	r.mu.Lock()
	r.ooms[id] = true
	r.mu.Unlock()
	_ = c.signal(unix.SIGKILL, false)
	select {
	case c.oomCh <- struct{}{}:
	default:
	}
}

func (r *hostRunner) oomKilled(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ooms[id]
}

// Fixed figures a host container's cgroup "reads" (there is none): what
// a test can expect after the agent's own conversion (convertStats).
const (
	HostStatsCPUNs       = 1_500_000
	HostStatsMemoryBytes = 4 << 20
)

// stats go through the agent's own conversion from libcontainer's cgroup
// statistics, with fixed CPU and memory figures and the live process count.
func (c *hostContainer) stats() (*agentapi.StatsContainerResponse, error) {
	pids, _ := c.pids()
	var cs cgroups.Stats
	cs.CpuStats.CpuUsage.TotalUsage = HostStatsCPUNs
	cs.MemoryStats.Usage.Usage = HostStatsMemoryBytes
	cs.PidsStats.Current = uint64(len(pids))
	return convertStats(&cs), nil
}

func (c *hostContainer) destroy() error {
	_ = c.signal(unix.SIGCONT, true)
	err := c.signal(unix.SIGKILL, true)
	c.closeOOM.Do(func() { close(c.oomCh) }) // ends the OOM watch, as a removed cgroup does
	return err
}

// hostMounter checks storage requests as the guest's does and records them.
type hostMounter struct {
	// mu guards mounts and hostname.
	mu       sync.Mutex
	mounts   []*agentapi.Storage
	hostname string
}

var _ mounter = (*hostMounter)(nil)

func (m *hostMounter) mount(st *agentapi.Storage) error {
	if _, _, _, _, err := mountArgs(st); err != nil {
		return err
	}
	m.mu.Lock()
	m.mounts = append(m.mounts, st)
	m.mu.Unlock()
	return nil
}

func (m *hostMounter) sethostname(name string) error {
	m.mu.Lock()
	m.hostname = name
	m.mu.Unlock()
	return nil
}

func (m *hostMounter) writeDNS([]string) error { return nil }
func (m *hostMounter) sync()                   {}

func (m *hostMounter) sysctl(k, v string) error {
	_, err := sysctlPath(k)
	return err
}

// offsetClock is a wall clock that is the host's plus an offset.
type offsetClock struct {
	// mu guards off and failed.
	mu     sync.Mutex
	off    time.Duration
	failed error
}

var _ wallClock = (*offsetClock)(nil)

func (c *offsetClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.off)
}

func (c *offsetClock) step(d time.Duration) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failed != nil {
		return c.failed
	}
	c.off += d
	return nil
}

func (c *offsetClock) offset() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.off
}

// hostEntropy records reseeds instead of feeding the host's pool.
type hostEntropy struct {
	// mu guards seeds.
	mu    sync.Mutex
	seeds [][]byte
}

var _ entropyPool = (*hostEntropy)(nil)

func (e *hostEntropy) reseed(seed []byte) error {
	e.mu.Lock()
	e.seeds = append(e.seeds, append([]byte(nil), seed...))
	e.mu.Unlock()
	return nil
}
