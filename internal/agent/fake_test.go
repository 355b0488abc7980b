package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// fakeExits delivers the exits of the fake runner's processes.
type fakeExits struct {
	mu sync.Mutex
	ch map[int]chan exitStatus
}

func newFakeExits() *fakeExits { return &fakeExits{ch: map[int]chan exitStatus{}} }

func (f *fakeExits) hold()    {}
func (f *fakeExits) release() {}
func (f *fakeExits) watch(pid int) <-chan exitStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.channel(pid)
}

func (f *fakeExits) channel(pid int) chan exitStatus {
	c, ok := f.ch[pid]
	if !ok {
		c = make(chan exitStatus, 1)
		f.ch[pid] = c
	}
	return c
}

func (f *fakeExits) deliver(pid int, ws syscall.WaitStatus) {
	f.mu.Lock()
	c := f.channel(pid)
	f.mu.Unlock()
	c <- statusFromWait(unix.WaitStatus(ws))
}

// fakeRunner runs containers as plain host processes: the "init" waits
// for a gate file before exec'ing its args, as a created container waits
// for start.
type fakeRunner struct {
	dir   string
	exits *fakeExits
}

type fakeContainer struct {
	r    *fakeRunner
	gate string
	cmds []*exec.Cmd
	mu   sync.Mutex
}

func (r *fakeRunner) spawn(args []string, io *stdio, gate string) (*exec.Cmd, error) {
	script := `while [ ! -e "$0" ]; do sleep 0.01; done; exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, gate}, args...)...)
	if io.childIn != nil {
		cmd.Stdin = io.childIn
	}
	cmd.Stdout, cmd.Stderr = io.childOut, io.childErr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = cmd.Wait()
		r.exits.deliver(cmd.Process.Pid, cmd.ProcessState.Sys().(syscall.WaitStatus))
	}()
	return cmd, nil
}

func (r *fakeRunner) create(id string, spec *specs.Spec, io *stdio) (containerRuntime, int, error) {
	c := &fakeContainer{r: r, gate: filepath.Join(r.dir, id+".gate")}
	cmd, err := r.spawn(spec.Process.Args, io, c.gate)
	if err != nil {
		return nil, 0, err
	}
	c.cmds = append(c.cmds, cmd)
	return c, cmd.Process.Pid, nil
}

func (c *fakeContainer) start() error { return os.WriteFile(c.gate, nil, 0o644) }

func (c *fakeContainer) exec(p *specs.Process, io *stdio) (int, error) {
	cmd, err := c.r.spawn(p.Args, io, c.gate)
	if err != nil {
		return 0, err
	}
	c.mu.Lock()
	c.cmds = append(c.cmds, cmd)
	c.mu.Unlock()
	return cmd.Process.Pid, nil
}

func (c *fakeContainer) signal(sig unix.Signal, all bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, cmd := range c.cmds {
		if i == 0 || all {
			_ = cmd.Process.Signal(sig)
		}
	}
	return nil
}

func (c *fakeContainer) pause() error                       { return nil }
func (c *fakeContainer) resume() error                      { return nil }
func (c *fakeContainer) update(*specs.LinuxResources) error { return nil }
func (c *fakeContainer) pids() ([]int, error)               { return []int{c.cmds[0].Process.Pid}, nil }
func (c *fakeContainer) oom() (<-chan struct{}, error)      { return nil, os.ErrNotExist }
func (c *fakeContainer) stats() (*agentapi.StatsContainerResponse, error) {
	return &agentapi.StatsContainerResponse{}, nil
}

func (c *fakeContainer) destroy() error {
	_ = c.signal(unix.SIGKILL, true)
	return nil
}

// fakeMounter records storage requests.
type fakeMounter struct {
	mu     sync.Mutex
	mounts []string
}

func (m *fakeMounter) mount(st *agentapi.Storage) error {
	if _, _, _, _, err := mountArgs(st); err != nil {
		return err
	}
	m.mu.Lock()
	m.mounts = append(m.mounts, st.MountPoint)
	m.mu.Unlock()
	return nil
}
func (m *fakeMounter) sethostname(string) error { return nil }
func (m *fakeMounter) writeDNS([]string) error  { return nil }
func (m *fakeMounter) sync()                    {}

func (m *fakeMounter) sysctl(k, v string) error {
	_, err := sysctlPath(k)
	return err
}
