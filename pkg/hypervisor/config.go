package hypervisor

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

// Accelerator chooses between hardware virtualisation and emulation.
type Accelerator string

const (
	AccelAuto Accelerator = "auto"
	AccelKVM  Accelerator = "kvm"
	AccelTCG  Accelerator = "tcg"
)

// Config describes one VM.
type Config struct {
	QEMUPath      string
	VirtiofsdPath string
	Kernel        string
	Initrd        string
	// KernelParams are appended to the ones the VMM needs.
	KernelParams []string
	MachineType  string // microvm or q35
	Accelerator  Accelerator
	VCPUs        int
	MemoryMiB    int
	Transport    Transport
	// StateDir holds sockets and the console log; it must exist.
	StateDir string
	// TBSizeMiB is TCG's translation cache size; 0 keeps QEMU's default.
	TBSizeMiB int
	// CPUModel overrides the vCPU model ("" : host under KVM, max under TCG).
	CPUModel string
	// AgentSecret is the pod's agent-channel secret (channel.SecretLen
	// bytes), handed to the guest out of band: for QEMU a fw_cfg file
	// written 0600 in StateDir and removed once QEMU has read it.
	AgentSecret []byte
	// Template makes a VM template, or starts the VM from one.
	Template TemplateConfig
	// Debug keeps the guest kernel verbose on the console.
	Debug  bool
	Logger *slog.Logger
}

// Validate checks what can be checked before anything starts, so a typo
// fails at once with the name of the thing that is wrong.
func (c *Config) Validate() error {
	if c.MachineType != "microvm" && c.MachineType != "q35" {
		return fmt.Errorf("machine type %q: want microvm or q35", c.MachineType)
	}
	if c.VCPUs < 1 || c.VCPUs > 64 {
		return fmt.Errorf("vcpus %d: want 1..64", c.VCPUs)
	}
	if c.MemoryMiB < 64 {
		return fmt.Errorf("memory %d MiB: want at least 64", c.MemoryMiB)
	}
	for _, f := range []struct{ what, path string }{
		{"hypervisor binary", c.QEMUPath}, {"guest kernel", c.Kernel}, {"guest initrd", c.Initrd},
	} {
		if f.path == "" {
			return fmt.Errorf("%s: no path configured", f.what)
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s %s: %w", f.what, f.path, err)
		}
	}
	switch c.Accelerator {
	case AccelAuto, AccelKVM, AccelTCG:
	default:
		return fmt.Errorf("accelerator %q: want auto, kvm or tcg", c.Accelerator)
	}
	switch c.Transport {
	case TransportSerial, TransportVsock:
	default:
		return fmt.Errorf("agent transport %q: want serial or vsock for QEMU", c.Transport)
	}
	// Empty means no fw_cfg file (tests that do not authenticate); any other
	// length is a caller's bug that would lock the guest out.
	if n := len(c.AgentSecret); n != 0 && n != channel.SecretLen {
		return fmt.Errorf("agent secret: %d bytes, want %d", n, channel.SecretLen)
	}
	return nil
}
