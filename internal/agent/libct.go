package agent

import (
	"errors"
	"fmt"
	"os"

	"github.com/opencontainers/cgroups"
	_ "github.com/opencontainers/cgroups/devices" // device rules through cgroup v2 eBPF
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runc/libcontainer/utils"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// libctRoot is libcontainer's state directory in the guest.
const libctRoot = "/run/libcontainer"

// libctRunner creates containers the way runc does.
type libctRunner struct{}

var _ runner = libctRunner{}

type libctContainer struct {
	c *libcontainer.Container
}

var _ containerRuntime = (*libctContainer)(nil)

func (libctRunner) create(id string, spec *specs.Spec, io *stdio) (containerRuntime, int, error) {
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: spec})
	if err != nil {
		return nil, 0, fmt.Errorf("convert OCI spec: %w", err)
	}
	c, err := libcontainer.Create(libctRoot, id, cfg)
	if err != nil {
		return nil, 0, fmt.Errorf("create: %w", err)
	}
	p, err := newLibctProcess(spec.Process, true)
	if err != nil {
		_ = c.Destroy()
		return nil, 0, err
	}
	pid, err := startWithIO(io, p, c.Start)
	if err != nil {
		_ = c.Destroy()
		return nil, 0, err
	}
	return &libctContainer{c: c}, pid, nil
}

// startWithIO wires a process's stdio (pipes or a new pty) and starts it.
func startWithIO(io *stdio, p *libcontainer.Process, start func(*libcontainer.Process) error) (int, error) {
	var consoleParent *os.File
	if io.tty {
		parent, child, err := utils.NewSockPair("console")
		if err != nil {
			return 0, fmt.Errorf("console socket: %w", err)
		}
		defer child.Close()
		defer parent.Close()
		p.ConsoleSocket = child
		consoleParent = parent
	} else {
		if io.childIn != nil {
			p.Stdin = io.childIn
		}
		p.Stdout = io.childOut
		p.Stderr = io.childErr
	}
	if err := start(p); err != nil {
		return 0, err
	}
	pid, err := p.Pid()
	if err != nil {
		return 0, err
	}
	if consoleParent != nil {
		master, err := recvFile(consoleParent)
		if err != nil {
			_ = p.Signal(unix.SIGKILL)
			return 0, fmt.Errorf("receive pty master: %w", err)
		}
		io.setTerminal(master, true)
	}
	return pid, nil
}

func newLibctProcess(p *specs.Process, init bool) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		NoNewPrivileges: &p.NoNewPrivileges,
		Init:            init,
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(p.ConsoleSize.Width)
		lp.ConsoleHeight = uint16(p.ConsoleSize.Height)
	}
	if c := p.Capabilities; c != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable,
			Permitted: c.Permitted, Ambient: c.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, r := range p.Rlimits {
		t, ok := rlimitTypes[r.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q", r.Type)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: r.Hard, Soft: r.Soft})
	}
	return lp, nil
}

var rlimitTypes = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

func (l *libctContainer) start() error { return l.c.Exec() }

func (l *libctContainer) exec(p *specs.Process, io *stdio) (int, error) {
	lp, err := newLibctProcess(p, false)
	if err != nil {
		return 0, err
	}
	return startWithIO(io, lp, l.c.Run)
}

func (l *libctContainer) signal(sig unix.Signal, all bool) error {
	if !all {
		return l.c.Signal(sig)
	}
	// Every process in the container's cgroup, like `runc kill --all`.
	pids, err := l.c.Processes()
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("kill %d: %w", pid, err)
		}
	}
	return nil
}

func (l *libctContainer) pause() error  { return l.c.Pause() }
func (l *libctContainer) resume() error { return l.c.Resume() }

func (l *libctContainer) update(r *specs.LinuxResources) error {
	cfg := l.c.Config()
	spec := &specs.Spec{Linux: &specs.Linux{Resources: r}}
	res, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{CgroupName: l.c.ID(), Spec: spec}, nil)
	if err != nil {
		return fmt.Errorf("convert resources: %w", err)
	}
	res.Resources.Devices = cfg.Cgroups.Resources.Devices
	cfg.Cgroups.Resources = res.Resources
	return l.c.Set(cfg)
}

func (l *libctContainer) stats() (*agentapi.StatsContainerResponse, error) {
	st, err := l.c.Stats()
	if err != nil {
		return nil, err
	}
	return convertStats(st.CgroupStats), nil
}

func convertStats(cs *cgroups.Stats) *agentapi.StatsContainerResponse {
	if cs == nil {
		return &agentapi.StatsContainerResponse{}
	}
	m := cs.MemoryStats.Stats
	return &agentapi.StatsContainerResponse{
		Cpu: &agentapi.CpuStats{
			UsageUsec:     cs.CpuStats.CpuUsage.TotalUsage / 1000,
			UserUsec:      cs.CpuStats.CpuUsage.UsageInUsermode / 1000,
			SystemUsec:    cs.CpuStats.CpuUsage.UsageInKernelmode / 1000,
			NrPeriods:     cs.CpuStats.ThrottlingData.Periods,
			NrThrottled:   cs.CpuStats.ThrottlingData.ThrottledPeriods,
			ThrottledUsec: cs.CpuStats.ThrottlingData.ThrottledTime / 1000,
		},
		Memory: &agentapi.MemoryStats{
			Usage:       cs.MemoryStats.Usage.Usage,
			UsageLimit:  cs.MemoryStats.Usage.Limit,
			MaxUsage:    cs.MemoryStats.Usage.MaxUsage,
			Anon:        m["anon"],
			File:        m["file"],
			KernelStack: m["kernel_stack"],
			Slab:        m["slab"],
			Sock:        m["sock"],
			Shmem:       m["shmem"],
			Pgfault:     m["pgfault"],
			Pgmajfault:  m["pgmajfault"],
		},
		Pids: &agentapi.PidsStats{Current: cs.PidsStats.Current, Limit: cs.PidsStats.Limit},
	}
}

func (l *libctContainer) pids() ([]int, error) { return l.c.Processes() }

func (l *libctContainer) oom() (<-chan struct{}, error) { return l.c.NotifyOOM() }

func (l *libctContainer) destroy() error {
	err := l.c.Destroy()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// recvFile receives the pty master libcontainer sends over the console
// socket (one fd in an SCM_RIGHTS message; the payload is its name).
func recvFile(sock *os.File) (*os.File, error) {
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	rc, err := sock.SyscallConn()
	if err != nil {
		return nil, err
	}
	var n, oobn int
	var rerr error
	if err := rc.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), name, oob, unix.MSG_CMSG_CLOEXEC)
		return rerr != unix.EAGAIN
	}); err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return nil, fmt.Errorf("console socket: want one control message, got %d (%v)", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return nil, fmt.Errorf("console socket: want one fd (%v)", err)
	}
	return os.NewFile(uintptr(fds[0]), string(name[:n])), nil
}
