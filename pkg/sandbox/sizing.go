package sandbox

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// vmSize adds the container's CPU and memory limits to the configured base,
// so a limited container gets the room it asked for on top of the guest's
// own needs.
func vmSize(baseVCPUs, baseMiB int, s *specs.Spec) (vcpus, memMiB int) {
	vcpus, memMiB = baseVCPUs, baseMiB
	if s == nil || s.Linux == nil || s.Linux.Resources == nil {
		return
	}
	r := s.Linux.Resources
	if r.CPU != nil && r.CPU.Quota != nil && *r.CPU.Quota > 0 && r.CPU.Period != nil && *r.CPU.Period > 0 {
		q, p := uint64(*r.CPU.Quota), *r.CPU.Period
		vcpus += int((q + p - 1) / p)
	}
	if r.Memory != nil && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		memMiB += int((*r.Memory.Limit + (1<<20 - 1)) >> 20)
	}
	return
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
