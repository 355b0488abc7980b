// Package config loads the runtime's TOML configuration. Every key has a
// documented default; unknown keys and bad values are errors naming the key.
package config

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where the shim looks when neither the runtime options nor
// the environment name a file.
const DefaultPath = "/etc/kata-go/configuration.toml"

// EnvPath names a configuration file, overriding DefaultPath.
const EnvPath = "KATA_GO_CONFIG"

// Config is the whole runtime configuration.
type Config struct {
	Hypervisor Hypervisor `toml:"hypervisor"`
	Agent      Agent      `toml:"agent"`
	Runtime    Runtime    `toml:"runtime"`
	Factory    Factory    `toml:"factory"`
	// Source is the file this was read from ("" for built-in defaults).
	Source string `toml:"-"`
}

// Hypervisor configures the VM.
type Hypervisor struct {
	Path          string   `toml:"path"`
	VirtiofsdPath string   `toml:"virtiofsd_path"`
	Kernel        string   `toml:"kernel"`
	Initrd        string   `toml:"initrd"`
	KernelParams  []string `toml:"kernel_params"`
	MachineType   string   `toml:"machine_type"`
	Accelerator   string   `toml:"accelerator"`
	VCPUs         int      `toml:"vcpus"`
	MemoryMiB     int      `toml:"memory_mib"`
	SharedFS      string   `toml:"shared_fs"`
	TCGTBSizeMiB  int      `toml:"tcg_tb_size_mib"`
	CPUModel      string   `toml:"cpu_model"`
	// EnableAnnotations lists annotation keys (without prefix) that pods may
	// use to override these settings; nothing is allowed by default.
	EnableAnnotations []string `toml:"enable_annotations"`
}

// Agent configures the channel to the guest agent.
type Agent struct {
	Transport   string   `toml:"transport"`
	DialTimeout Duration `toml:"dial_timeout"`
	// CreateTimeout bounds the agent calls that set up a process (create
	// and start a container, start an exec): slow under TCG emulation.
	CreateTimeout Duration `toml:"create_timeout"`
	// RequestTimeout bounds every other agent call made for a containerd
	// request (kill, pause, stats, remove...), and how long output may
	// trail a process's exit. A guest that does not answer in time fails
	// the request instead of hanging containerd.
	RequestTimeout Duration `toml:"request_timeout"`
	// DebugConsole allows `containerd-shim-kata-v2 exec`: a root shell in
	// the guest, outside every container (docs/security.md).
	DebugConsole bool `toml:"debug_console"`
}

// Runtime configures the shim itself.
type Runtime struct {
	Debug bool `toml:"debug"`
	// StateRoot holds one directory per sandbox (sockets, console log, share).
	StateRoot string `toml:"state_root"`
	// NetworkModel joins a pod's veths to its VM: tcfilter, macvtap or none.
	NetworkModel string `toml:"network_model"`
}

// Factory configures VM templates (docs/templates.md).
type Factory struct {
	// EnableTemplate restores each pod's VM from a template of its shape,
	// made by the first pod that needs it.
	EnableTemplate bool `toml:"enable_template"`
	// TemplatePath holds the templates: root's alone, and on a disk
	// filesystem, never tmpfs (pkg/vmtemplate refuses one: there a clone's
	// first touch of a page allocates it in the shared memory file). A
	// restore still maps memory: the template's pages are in the page
	// cache, shared by its clones.
	TemplatePath string `toml:"template_path"`
}

// Duration is a time.Duration written as "30s" in TOML.
type Duration struct{ time.Duration }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the built-in configuration.
func Default() Config {
	return Config{
		Hypervisor: Hypervisor{
			Path:          "/usr/bin/qemu-system-x86_64",
			VirtiofsdPath: "/usr/lib/qemu/virtiofsd",
			Kernel:        "/usr/local/share/kata-go/vmlinux",
			Initrd:        "/usr/local/share/kata-go/initrd.img",
			MachineType:   "microvm",
			Accelerator:   "auto",
			VCPUs:         1,
			MemoryMiB:     512,
			SharedFS:      "virtio-fs",
		},
		Agent: Agent{
			Transport: "auto", DialTimeout: Duration{30 * time.Second},
			CreateTimeout: Duration{30 * time.Second}, RequestTimeout: Duration{10 * time.Second},
		},
		Runtime: Runtime{StateRoot: "/run/kata-go", NetworkModel: "tcfilter"},
		Factory: Factory{TemplatePath: "/var/lib/kata-go/templates"},
	}
}

// Load reads path over the defaults. path "" means: $KATA_GO_CONFIG, else
// DefaultPath if it exists, else the defaults alone.
func Load(path string) (Config, error) {
	c := Default()
	if path == "" {
		path = os.Getenv(EnvPath)
	}
	if path == "" {
		if _, err := os.Stat(DefaultPath); err != nil {
			return c, c.Validate()
		}
		path = DefaultPath
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if err := c.parse(string(b)); err != nil {
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	c.Source = path
	return c, nil
}

// Parse reads TOML text over the defaults.
func Parse(text string) (Config, error) {
	c := Default()
	return c, c.parse(text)
}

func (c *Config) parse(text string) error {
	md, err := toml.Decode(text, c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			if perr.LastKey != "" {
				return fmt.Errorf("line %d, key %s: %s", perr.Position.Line, perr.LastKey, perr.Message)
			}
			return fmt.Errorf("line %d: %s", perr.Position.Line, perr.Message)
		}
		return err
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("unknown key(s): %s", strings.Join(keys, ", "))
	}
	return c.Validate()
}

// Validate checks values (not the existence of files: that is checked when a
// VM starts, so a missing kernel is reported against the pod that needs it).
func (c *Config) Validate() error {
	h := c.Hypervisor
	switch h.MachineType {
	case "microvm", "q35":
	default:
		return fmt.Errorf("hypervisor.machine_type %q: want microvm or q35", h.MachineType)
	}
	switch h.Accelerator {
	case "auto", "kvm", "tcg":
	default:
		return fmt.Errorf("hypervisor.accelerator %q: want auto, kvm or tcg", h.Accelerator)
	}
	if h.VCPUs < 1 || h.VCPUs > 64 {
		return fmt.Errorf("hypervisor.vcpus %d: want 1..64", h.VCPUs)
	}
	if h.MemoryMiB < 64 {
		return fmt.Errorf("hypervisor.memory_mib %d: want at least 64", h.MemoryMiB)
	}
	switch h.SharedFS {
	case "virtio-fs", "9p":
	default:
		return fmt.Errorf("hypervisor.shared_fs %q: want virtio-fs or 9p", h.SharedFS)
	}
	if h.TCGTBSizeMiB < 0 {
		return fmt.Errorf("hypervisor.tcg_tb_size_mib %d: must not be negative", h.TCGTBSizeMiB)
	}
	for _, k := range []struct{ key, val string }{
		{"hypervisor.path", h.Path}, {"hypervisor.kernel", h.Kernel}, {"hypervisor.initrd", h.Initrd},
		{"runtime.state_root", c.Runtime.StateRoot}, {"factory.template_path", c.Factory.TemplatePath},
	} {
		if !strings.HasPrefix(k.val, "/") {
			return fmt.Errorf("%s %q: must be an absolute path", k.key, k.val)
		}
	}
	for _, p := range h.KernelParams {
		// Only agent.debug_console may ask the guest for debug shells.
		if strings.HasPrefix(p, "kata_go.") {
			return fmt.Errorf("hypervisor.kernel_params %q: kata_go.* parameters are the runtime's own (use agent.debug_console)", p)
		}
	}
	for _, a := range h.EnableAnnotations {
		if _, ok := annotationSetters[a]; !ok {
			return fmt.Errorf("hypervisor.enable_annotations: unknown annotation %q", a)
		}
	}
	switch c.Runtime.NetworkModel {
	case "tcfilter", "macvtap", "none":
	default:
		return fmt.Errorf("runtime.network_model %q: want tcfilter, macvtap or none", c.Runtime.NetworkModel)
	}
	switch c.Agent.Transport {
	case "auto", "serial", "vsock":
	default:
		return fmt.Errorf("agent.transport %q: want auto, serial or vsock", c.Agent.Transport)
	}
	for _, d := range []struct {
		key string
		val Duration
	}{
		{"agent.dial_timeout", c.Agent.DialTimeout}, {"agent.create_timeout", c.Agent.CreateTimeout},
		{"agent.request_timeout", c.Agent.RequestTimeout},
	} {
		if d.val.Duration <= 0 || d.val.Duration > 10*time.Minute {
			return fmt.Errorf("%s %s: want more than 0 and at most 10m", d.key, d.val)
		}
	}
	return nil
}
