package sandbox

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hostcgroup"
	"github.com/kata-go/kata-go/pkg/hypervisor"
)

// HostOverheadMiB is what a pod costs the host beyond its guest RAM and
// TCG's translation cache: QEMU's own memory (binary, guest kernel and
// initrd, device state), virtiofsd and the shim. `go run ./bench -only
// overhead` measured 84 MiB PSS for an idle pod (2026-12-02,
// docs/kubernetes.md); the limit leaves room for page cache charged to
// the group and for I/O bursts.
const HostOverheadMiB = 192

// qemuDefaultTBMiB is QEMU's translation cache size for system emulation
// on a 64-bit host when tb-size is not given (1 GiB since QEMU 5.0).
const qemuDefaultTBMiB = 1024

// podCgroup is the sandbox's host cgroup (its spec's linux.cgroupsPath).
type podCgroup struct {
	g    hostcgroup.Group
	path string
	// shimFrom is where the shim was before it joined (nil: it did not,
	// containerd placed it with shim_cgroup); it goes back there before
	// the group is removed.
	shimFrom hostcgroup.Group

	// mu guards limit.
	mu    sync.Mutex
	limit int64
}

// hostLimitMiB is the memory the pod's host cgroup allows for a VM of
// memMiB: guest RAM, the measured overhead and, under TCG, the translation
// cache (which KVM does not have).
func hostLimitMiB(h config.Hypervisor, memMiB int) int {
	n := memMiB + HostOverheadMiB
	kvm := h.Accelerator == string(hypervisor.AccelKVM)
	if h.Accelerator == "" || h.Accelerator == "auto" {
		kvm, _ = hypervisor.HardwareKVM()
	}
	if !kvm {
		if h.TCGTBSizeMiB > 0 {
			n += h.TCGTBSizeMiB
		} else {
			n += qemuDefaultTBMiB
		}
	}
	return n
}

// cgroupsPathOf is the sandbox's linux.cgroupsPath, "" if none.
func cgroupsPathOf(s *specs.Spec) string {
	if s == nil || s.Linux == nil {
		return ""
	}
	return s.Linux.CgroupsPath
}

// openPodCgroup creates the pod's host cgroup before the VM starts and,
// unless containerd placed the shim itself, moves the shim in, so QEMU and
// virtiofsd are born there and every page they touch is charged to the pod.
func openPodCgroup(raw string, limitMiB int, shimPlaced bool, log *slog.Logger) (*podCgroup, error) {
	if raw == "" {
		log.Info("no linux.cgroupsPath: the VM stays in the shim's cgroup")
		return nil, nil
	}
	p, err := hostcgroup.ParsePath(raw)
	if err != nil {
		return nil, err
	}
	limit := int64(limitMiB) << 20
	g, err := hostcgroup.Create(p, limit)
	if err != nil {
		return nil, err
	}
	pc := &podCgroup{g: g, path: raw, limit: limit}
	if !shimPlaced {
		from, err := hostcgroup.Of(os.Getpid())
		if err != nil {
			return pc, err
		}
		if err := g.Add(os.Getpid()); err != nil {
			return pc, err
		}
		pc.shimFrom = from
	}
	log.Info("pod cgroup", "path", raw, "dir", p.Dir, "memory_limit_mib", limitMiB, "shim_joined", !shimPlaced)
	return pc, nil
}

// leave moves the shim back where it was, so the group can be removed.
func (pc *podCgroup) leave() error {
	if pc == nil || pc.shimFrom == nil {
		return nil
	}
	if err := pc.shimFrom.Add(os.Getpid()); err != nil {
		return fmt.Errorf("shim leaving pod cgroup %s: %w", pc.path, err)
	}
	pc.shimFrom = nil
	return nil
}

// placeVM puts the VM's processes and their children (virtiofsd's
// sandboxed worker) in the pod's cgroup, if any, and gives them the pod's
// OOM score (the sandbox spec's process.oomScoreAdj) instead of the
// shim's, which is containerd's.
func placeVM(pids []int, pc *podCgroup, spec *specs.Spec) error {
	var adj *int
	if spec != nil && spec.Process != nil {
		adj = spec.Process.OOMScoreAdj
	}
	for _, pid := range withDescendants(pids) {
		if pc != nil {
			if err := pc.g.Add(pid); err != nil {
				return err
			}
		}
		if adj != nil {
			if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid), []byte(strconv.Itoa(*adj)), 0); err != nil {
				return fmt.Errorf("oom_score_adj of VM process %d: %w", pid, err)
			}
		}
	}
	return nil
}

// withDescendants is pids and all their children, depth first.
func withDescendants(pids []int) []int {
	var out []int
	seen := map[int]bool{}
	var walk func(int)
	walk = func(pid int) {
		if seen[pid] || len(seen) > 4096 {
			return
		}
		seen[pid] = true
		out = append(out, pid)
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		for _, t := range tasks {
			b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					walk(c)
				}
			}
		}
	}
	for _, p := range pids {
		walk(p)
	}
	return out
}

// GrowPodCgroup raises the pod's host memory limit when an update of the
// sandbox's resources makes the pod larger than the limit allows; it never
// shrinks it below what the running VM needs.
func (s *Sandbox) GrowPodCgroup(r *specs.LinuxResources) error {
	pc := s.cgroup
	if pc == nil || r == nil || r.Memory == nil || r.Memory.Limit == nil || *r.Memory.Limit <= 0 {
		return nil
	}
	want := int64(hostLimitMiB(s.cfg.Hypervisor, s.size.BaseMemoryMiB+mibOf(*r.Memory.Limit))) << 20
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if want <= pc.limit {
		return nil
	}
	if err := pc.g.SetMemoryLimit(want); err != nil {
		return fmt.Errorf("grow pod cgroup %s to %d MiB: %w", pc.path, want>>20, err)
	}
	s.log.Info("pod cgroup grown", "path", pc.path, "memory_limit_mib", want>>20)
	pc.limit = want
	return nil
}
