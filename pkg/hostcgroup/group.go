package hostcgroup

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Group is one host cgroup (in every v1 hierarchy, or the v2 tree).
type Group interface {
	// Add moves a process, with all its threads, into the group.
	Add(pid int) error
	// SetMemoryLimit sets the group's memory limit in bytes.
	SetMemoryLimit(bytes int64) error
	// MemoryLimit is the group's memory limit in bytes (-1: none).
	MemoryLimit() (int64, error)
	// Pids are the processes in the group and below it.
	Pids() ([]int, error)
	// Delete removes the group; it must hold no process.
	Delete() error
	// String names the group for logs and errors.
	String() string
}

var (
	_ Group = (*v1Group)(nil)
	_ Group = (*v2Group)(nil)
)

// unified reports whether the host runs the v2 tree only; a hybrid host
// (v1 controllers, an empty v2 tree beside them) counts as v1.
func unified() bool { return cgroups.Mode() == cgroups.Unified }

// Create makes the group at p (or adopts it if it exists) with a memory
// limit of memLimit bytes (0: none).
func Create(p Path, memLimit int64) (Group, error) {
	if unified() {
		res := &cgroup2.Resources{}
		if memLimit > 0 {
			res.Memory = &cgroup2.Memory{Max: &memLimit}
		}
		m, err := cgroup2.NewManager("/sys/fs/cgroup", p.Dir, res)
		if err != nil {
			return nil, fmt.Errorf("create cgroup %s: %w", p.Raw, err)
		}
		return &v2Group{m: m, dir: p.Dir}, nil
	}
	res := &specs.LinuxResources{}
	if memLimit > 0 {
		res.Memory = &specs.LinuxMemory{Limit: &memLimit}
	}
	cg, err := cgroup1.New(cgroup1.StaticPath(p.Dir), res)
	if err != nil {
		return nil, fmt.Errorf("create cgroup %s: %w", p.Raw, err)
	}
	return &v1Group{cg: cg, dir: p.Dir}, nil
}

// Load opens an existing group; errors.Is(err, os.ErrNotExist) if gone.
func Load(p Path) (Group, error) {
	if unified() {
		if _, err := os.Stat("/sys/fs/cgroup" + p.Dir); err != nil {
			return nil, fmt.Errorf("cgroup %s: %w", p.Raw, err)
		}
		m, err := cgroup2.Load(p.Dir)
		if err != nil {
			return nil, fmt.Errorf("cgroup %s: %w", p.Raw, err)
		}
		return &v2Group{m: m, dir: p.Dir}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(p.Dir))
	if err != nil {
		if errors.Is(err, cgroup1.ErrCgroupDeleted) {
			err = errors.Join(err, os.ErrNotExist)
		}
		return nil, fmt.Errorf("cgroup %s: %w", p.Raw, err)
	}
	return &v1Group{cg: cg, dir: p.Dir}, nil
}

// Of is the group pid is in now, to move it back there later.
func Of(pid int) (Group, error) {
	if unified() {
		dir, err := cgroup2.PidGroupPath(pid)
		if err != nil {
			return nil, err
		}
		m, err := cgroup2.Load(dir)
		if err != nil {
			return nil, err
		}
		return &v2Group{m: m, dir: dir}, nil
	}
	cg, err := cgroup1.Load(cgroup1.PidPath(pid))
	if err != nil {
		return nil, fmt.Errorf("cgroup of pid %d: %w", pid, err)
	}
	return &v1Group{cg: cg, dir: fmt.Sprintf("(that of pid %d)", pid)}, nil
}

// JoinExisting moves pid into the existing group at raw (cgroupfs syntax,
// as containerd's shim_cgroup option is for runc's shim). The group is
// not created: that is whoever configured it's to do.
func JoinExisting(raw string, pid int) error {
	p, err := ParsePath(raw)
	if err != nil {
		return err
	}
	if p.Systemd {
		return fmt.Errorf("shim cgroup %q: want a cgroupfs path, as runc's shim does", raw)
	}
	g, err := Load(p)
	if err != nil {
		return err
	}
	return g.Add(pid)
}

// Remove deletes the group at raw after killing whatever is still in it
// (only the pod's own processes live there: the group is its sandbox's
// leaf). A group already gone is not an error, so cleanup can run twice.
func Remove(raw string) error {
	p, err := ParsePath(raw)
	if err != nil {
		return err
	}
	g, err := Load(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		pids, err := g.Pids()
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if err == nil && len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s: processes %v still in it", raw, pids)
		}
		for _, pid := range pids {
			if pid != os.Getpid() {
				_ = unix.Kill(pid, unix.SIGKILL)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := g.Delete(); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove cgroup %s: %w", raw, err)
	}
	return nil
}

type v1Group struct {
	cg  cgroup1.Cgroup
	dir string
}

func (g *v1Group) Add(pid int) error {
	if err := g.cg.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("move pid %d to cgroup %s: %w", pid, g.dir, err)
	}
	return nil
}

func (g *v1Group) SetMemoryLimit(bytes int64) error {
	return g.cg.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &bytes}})
}

func (g *v1Group) MemoryLimit() (int64, error) {
	for _, sub := range g.cg.Subsystems() {
		if p, ok := sub.(interface{ Path(string) string }); ok && sub.Name() == cgroup1.Memory {
			return readInt(p.Path(g.dir) + "/memory.limit_in_bytes")
		}
	}
	return 0, errors.New("no memory cgroup hierarchy")
}

func (g *v1Group) Pids() ([]int, error) {
	procs, err := g.cg.Processes(cgroup1.Memory, true)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range procs {
		pids = append(pids, p.Pid)
	}
	return pids, nil
}

func (g *v1Group) Delete() error  { return g.cg.Delete() }
func (g *v1Group) String() string { return g.dir }

type v2Group struct {
	m   *cgroup2.Manager
	dir string
}

func (g *v2Group) Add(pid int) error {
	if err := g.m.AddProc(uint64(pid)); err != nil {
		return fmt.Errorf("move pid %d to cgroup %s: %w", pid, g.dir, err)
	}
	return nil
}

func (g *v2Group) SetMemoryLimit(bytes int64) error {
	return g.m.Update(&cgroup2.Resources{Memory: &cgroup2.Memory{Max: &bytes}})
}

func (g *v2Group) MemoryLimit() (int64, error) {
	return readInt("/sys/fs/cgroup" + g.dir + "/memory.max")
}

func (g *v2Group) Pids() ([]int, error) {
	procs, err := g.m.Procs(true)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range procs {
		pids = append(pids, int(p))
	}
	return pids, nil
}

func (g *v2Group) Delete() error  { return g.m.Delete() }
func (g *v2Group) String() string { return g.dir }

// readInt reads a cgroup value; "max" is -1.
func readInt(file string) (int64, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return -1, nil
	}
	return strconv.ParseInt(s, 10, 64)
}
