package metrics

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// kvmDebugfs holds KVM's per-VM statistics, one directory "PID-FD" per VM.
var kvmDebugfs = "/sys/kernel/debug/kvm"

// ReadVMExits returns the VM exits by cause (io, mmio, halt, irq…) of the
// KVM VM that process pid runs, from KVM's debugfs statistics. It is
// empty under TCG (there is no KVM VM) or without debugfs.
func ReadVMExits(pid int) map[string]uint64 {
	dirs, _ := filepath.Glob(filepath.Join(kvmDebugfs, strconv.Itoa(pid)+"-*"))
	out := map[string]uint64{}
	for _, dir := range dirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			cause, ok := strings.CutSuffix(e.Name(), "_exits")
			if !ok || e.IsDir() {
				continue
			}
			b, err := os.ReadFile(filepath.Join(dir, e.Name()))
			if err != nil {
				continue
			}
			if v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
				out[cause] += v
			}
		}
	}
	return out
}
