package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The pod's own resources, which containerd's CRI (1.7 and later) puts on
// the sandbox container from PodSandboxConfig.linux.resources: the kubelet
// fills them from the sum of the pod's container limits. The sandbox
// ("pause") container itself carries no limits.
const (
	AnnSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	AnnSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnSandboxCPUShares = "io.kubernetes.cri.sandbox-cpu-shares"
	AnnSandboxMemory    = "io.kubernetes.cri.sandbox-memory"
)

// Sizing rules, as the log names them.
const (
	RulePod       = "pod resources"
	RuleContainer = "first container's limits"
)

// Size is the VM a sandbox gets and the rule that chose it.
type Size struct {
	VCPUs, MemoryMiB int
	// BaseMemoryMiB is the guest's own share (the configured base).
	BaseMemoryMiB int
	Rule, Why     string
}

// vmSize is the configured base (the guest's own needs) plus the pod's CPU
// and memory when containerd passed them, else plus the first container's
// limits: under plain ctr that container is the whole workload; a CRI
// pod without linux.resources (or from a containerd that does not pass
// them) gets the base alone, its pause container having no limits.
func vmSize(baseVCPUs, baseMiB int, s *specs.Spec) (Size, error) {
	sz := Size{VCPUs: baseVCPUs, MemoryMiB: baseMiB, BaseMemoryMiB: baseMiB}
	var ann map[string]string
	if s != nil {
		ann = s.Annotations
	}
	if _, ok := ann[AnnSandboxMemory]; ok {
		period, err := annInt(ann, AnnSandboxCPUPeriod)
		if err != nil {
			return sz, err
		}
		quota, err := annInt(ann, AnnSandboxCPUQuota)
		if err != nil {
			return sz, err
		}
		mem, err := annInt(ann, AnnSandboxMemory)
		if err != nil {
			return sz, err
		}
		if _, err := annInt(ann, AnnSandboxCPUShares); err != nil {
			return sz, err
		}
		sz.VCPUs += cpusOf(quota, period)
		sz.MemoryMiB += mibOf(mem)
		sz.Rule = RulePod
		sz.Why = fmt.Sprintf("containerd passed the pod's resources (%s=%d, cpu quota %d per period %d)", AnnSandboxMemory, mem, quota, period)
		return sz, nil
	}
	sz.Rule = RuleContainer
	sz.Why = "no " + AnnSandboxMemory + " annotation (not a CRI pod, a pod config without linux.resources, or a containerd that does not pass them)"
	if s == nil || s.Linux == nil || s.Linux.Resources == nil {
		return sz, nil
	}
	r := s.Linux.Resources
	if r.CPU != nil && r.CPU.Quota != nil && r.CPU.Period != nil && *r.CPU.Period <= 1<<40 {
		sz.VCPUs += cpusOf(*r.CPU.Quota, int64(*r.CPU.Period))
	}
	if r.Memory != nil && r.Memory.Limit != nil {
		sz.MemoryMiB += mibOf(*r.Memory.Limit)
	}
	return sz, nil
}

// annInt reads an integer annotation; a missing one is 0 (no limit).
func annInt(ann map[string]string, key string) (int64, error) {
	v, ok := ann[key]
	if !ok || v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("annotation %s=%q: %w: not an integer", key, v, errdefs.ErrInvalidArgument)
	}
	return n, nil
}

// cpusOf is a CFS quota in whole CPUs, rounded up; 0 when unlimited.
func cpusOf(quota, period int64) int {
	if quota <= 0 || period <= 0 {
		return 0
	}
	n := (quota + period - 1) / period
	if n > 1<<16 {
		n = 1 << 16 // Config.Validate and checkHostMemory refuse what no VM can be
	}
	return int(n)
}

// mibOf is a byte limit in MiB, rounded up; 0 when unlimited.
func mibOf(limit int64) int {
	if limit <= 0 {
		return 0
	}
	return int((uint64(limit) + (1<<20 - 1)) >> 20)
}

// Size is the VM this sandbox was started with.
func (s *Sandbox) Size() Size { return s.size }

// CheckFits refuses a container whose memory limit is larger than the VM
// it would join: microvm has no memory hotplug, so it could never get that
// memory and would be OOM-killed in the guest long before its limit. The
// error is errdefs.ErrFailedPrecondition: the request is valid in itself
// and fits a larger pod (a caller retrying after resizing the pod can
// succeed), which is gRPC's FailedPrecondition rather than
// InvalidArgument, and the class kata-go's Create already gives a
// container that cannot join its sandbox.
func (s *Sandbox) CheckFits(id string, spec *specs.Spec) error {
	if spec == nil || spec.Linux == nil || spec.Linux.Resources == nil {
		return nil
	}
	return s.checkMemoryFits(id, spec.Linux.Resources)
}

// CheckResourcesFit is CheckFits for an Update's resources.
func (s *Sandbox) CheckResourcesFit(id string, r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	return s.checkMemoryFits(id, r)
}

func (s *Sandbox) checkMemoryFits(id string, r *specs.LinuxResources) error {
	if r.Memory == nil || r.Memory.Limit == nil || *r.Memory.Limit <= 0 {
		return nil
	}
	if need := mibOf(*r.Memory.Limit); need > s.size.MemoryMiB {
		return fmt.Errorf("container %s: memory limit %d MiB does not fit its pod's VM of %d MiB (sized by %s; microvm has no memory hotplug): %w",
			id, need, s.size.MemoryMiB, s.size.Rule, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// hostMemMiB is the host's total memory, 0 if unknown.
func hostMemMiB() int {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.Atoi(f[1])
			return kb / 1024
		}
	}
	return 0
}

func checkHostMemory(memMiB int) error {
	if host := hostMemMiB(); host > 0 && memMiB > host {
		return fmt.Errorf("VM memory %d MiB is more than the host has (%d MiB)", memMiB, host)
	}
	return nil
}
