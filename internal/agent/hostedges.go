package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
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

	// mu guards specs.
	mu    sync.Mutex
	specs map[string]*specs.Spec
}

var _ runner = (*hostRunner)(nil)

type hostContainer struct {
	r    *hostRunner
	gate string

	// mu guards cmds, paused and resources.
	mu        sync.Mutex
	cmds      []*exec.Cmd
	paused    bool
	resources *specs.LinuxResources
}

var _ containerRuntime = (*hostContainer)(nil)

func (r *hostRunner) spawn(args []string, io *stdio, gate string) (*exec.Cmd, error) {
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
	go func() {
		_ = cmd.Wait()
		r.exits.deliver(cmd.Process.Pid, cmd.ProcessState.Sys().(syscall.WaitStatus))
	}()
	return cmd, nil
}

func (r *hostRunner) create(id string, spec *specs.Spec, io *stdio) (containerRuntime, int, error) {
	c := &hostContainer{r: r, gate: filepath.Join(r.dir, id+".gate")}
	if err := os.Remove(c.gate); err != nil && !os.IsNotExist(err) {
		return nil, 0, err
	}
	cmd, err := r.spawn(spec.Process.Args, io, c.gate)
	if err != nil {
		return nil, 0, err
	}
	c.cmds = append(c.cmds, cmd)
	r.mu.Lock()
	r.specs[id] = spec
	r.mu.Unlock()
	return c, cmd.Process.Pid, nil
}

func (r *hostRunner) spec(id string) *specs.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.specs[id]
}

func (c *hostContainer) start() error { return os.WriteFile(c.gate, nil, 0o644) }

func (c *hostContainer) exec(p *specs.Process, io *stdio) (int, error) {
	cmd, err := c.r.spawn(p.Args, io, c.gate)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.cmds = append(c.cmds, cmd)
	c.mu.Unlock()
	return cmd.Process.Pid, nil
}

func (c *hostContainer) signal(sig unix.Signal, all bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, cmd := range c.cmds {
		if i == 0 || all {
			_ = cmd.Process.Signal(sig)
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
	for _, cmd := range c.cmds {
		if cmd.ProcessState == nil {
			out = append(out, cmd.Process.Pid)
		}
	}
	return out, nil
}

// oom: host processes have no cgroup of their own, so no OOM events (the
// real agent reports them from the container's cgroup, and never in stats).
func (c *hostContainer) oom() (<-chan struct{}, error) { return nil, os.ErrNotExist }

// stats are empty: there is no cgroup to read. The real agent's stats come
// from libcontainer and carry no OOM counts (see convertStats).
func (c *hostContainer) stats() (*agentapi.StatsContainerResponse, error) {
	return &agentapi.StatsContainerResponse{}, nil
}

func (c *hostContainer) destroy() error {
	_ = c.signal(unix.SIGCONT, true)
	return c.signal(unix.SIGKILL, true)
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
