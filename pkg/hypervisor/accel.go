package hypervisor

import (
	"fmt"
	"os"
)

// HardwareKVM reports whether /dev/kvm is backed by hardware virtualisation
// (kvm_intel or kvm_amd). Other KVM providers, such as PVM, cannot boot a
// stock guest kernel, so auto mode treats them as absent.
func HardwareKVM() (bool, string) {
	for _, m := range []string{"kvm_intel", "kvm_amd"} {
		if _, err := os.Stat("/sys/module/" + m); err == nil {
			f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
			if err != nil {
				return false, fmt.Sprintf("%s is loaded but /dev/kvm cannot be opened: %v", m, err)
			}
			f.Close()
			return true, m + " is loaded"
		}
	}
	if _, err := os.Stat("/sys/module/kvm_pvm"); err == nil {
		return false, "/dev/kvm is PVM (kvm_pvm), not hardware KVM"
	}
	if _, err := os.Stat("/dev/kvm"); err != nil {
		return false, "no /dev/kvm"
	}
	return false, "neither kvm_intel nor kvm_amd is loaded"
}

// resolveAccel turns auto into a concrete accelerator and says why.
func resolveAccel(a Accelerator) (Accelerator, string, error) {
	ok, why := HardwareKVM()
	switch a {
	case AccelKVM:
		if _, err := os.Stat("/dev/kvm"); err != nil {
			return "", "", fmt.Errorf("accelerator kvm requested but %s", why)
		}
		return AccelKVM, "configured", nil
	case AccelTCG:
		return AccelTCG, "configured", nil
	}
	if ok {
		return AccelKVM, "auto: " + why, nil
	}
	return AccelTCG, "auto: " + why + "; using TCG emulation", nil
}

// Accelerator is the accelerator the started VM runs under and why it was
// chosen ("" before Start).
func (q *QEMU) Accelerator() (Accelerator, string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.accel, q.accelWhy
}

// ResolveAccelerator is the accelerator a VM configured with a would run
// under on this host now, and why.
func ResolveAccelerator(a Accelerator) (Accelerator, string, error) { return resolveAccel(a) }
