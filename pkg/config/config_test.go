package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The shipped example must parse to exactly the defaults it documents.
func TestExampleConfigIsTheDefaults(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "config", "configuration.toml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse(string(b))
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	d := Default()
	if c.Hypervisor.Path != d.Hypervisor.Path || c.Hypervisor.MemoryMiB != d.Hypervisor.MemoryMiB ||
		c.Hypervisor.SharedFS != d.Hypervisor.SharedFS || c.Agent.DialTimeout != d.Agent.DialTimeout ||
		c.Runtime.StateRoot != d.Runtime.StateRoot || c.Hypervisor.Kernel != d.Hypervisor.Kernel {
		t.Fatalf("example config differs from Default():\n%+v\n%+v", c, d)
	}
}

func TestErrorsNameTheKey(t *testing.T) {
	cases := []struct{ text, want string }{
		{"[hypervisor]\nmemroy_mib = 3\n", "hypervisor.memroy_mib"},
		{"[hypervisor]\nmemory_mib = 3\n", "hypervisor.memory_mib"},
		{"[hypervisor]\naccelerator = \"hvf\"\n", "hypervisor.accelerator"},
		{"[hypervisor]\nmachine_type = \"pc\"\n", "hypervisor.machine_type"},
		{"[hypervisor]\nshared_fs = \"nfs\"\n", "hypervisor.shared_fs"},
		{"[hypervisor]\nvcpus = 0\n", "hypervisor.vcpus"},
		{"[hypervisor]\nkernel = \"vmlinux\"\n", "hypervisor.kernel"},
		{"[hypervisor]\nenable_annotations = [\"nope\"]\n", "enable_annotations"},
		{"[agent]\ntransport = \"tcp\"\n", "agent.transport"},
		{"[agent]\ndial_timeout = \"soon\"\n", "dial_timeout"},
		{"[agent]\ncreate_timeout = \"0s\"\n", "agent.create_timeout"},
		{"[agent]\nrequest_timeout = \"-1s\"\n", "agent.request_timeout"},
		{"[agent]\nrequest_timeout = \"11m\"\n", "agent.request_timeout"},
		{"[runtime]\ndebug = \"yes\"\n", "debug"},
		{"[agent]\ndebug_console = 1\n", "debug_console"},
		// Only agent.debug_console may ask the guest for debug shells.
		{"[hypervisor]\nkernel_params = [\"kata_go.debug_console=1\"]\n", "hypervisor.kernel_params"},
		{"[oops\n", "line 2"},
	}
	for _, c := range cases {
		_, err := Parse(c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%q) = %v; want an error naming %q", c.text, err, c.want)
		}
	}
}

func TestLoadOrder(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "c.toml")
	if err := os.WriteFile(p, []byte("[hypervisor]\nmemory_mib = 1024\n[agent]\ndial_timeout = \"5s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvPath, p)
	c, err := Load("")
	if err != nil || c.Hypervisor.MemoryMiB != 1024 || c.Agent.DialTimeout.Duration != 5*time.Second || c.Source != p {
		t.Fatalf("Load via env: %+v, %v", c, err)
	}
	if _, err := Load(filepath.Join(dir, "missing.toml")); err == nil || !strings.Contains(err.Error(), "missing.toml") {
		t.Fatalf("Load of a missing file: %v", err)
	}
	if err := os.Chmod(p, 0); err == nil && os.Geteuid() != 0 {
		if _, err := Load(p); err == nil {
			t.Fatal("unreadable config loaded")
		}
	}
}

func TestAnnotations(t *testing.T) {
	c := Default()
	err := c.ApplyAnnotations(map[string]string{AnnotationPrefix + "hypervisor.path": "/bin/evil"})
	if err == nil || !strings.Contains(err.Error(), "not allowed") || c.Hypervisor.Path == "/bin/evil" {
		t.Fatalf("hypervisor.path override without allowlist: %v (path %s)", err, c.Hypervisor.Path)
	}
	err = c.ApplyAnnotations(map[string]string{AnnotationPrefix + "hypervisor.bogus": "1"})
	if err == nil || !strings.Contains(err.Error(), "hypervisor.bogus") {
		t.Fatalf("unknown annotation: %v", err)
	}
	c.Hypervisor.EnableAnnotations = []string{"hypervisor.memory_mib"}
	if err := c.ApplyAnnotations(map[string]string{AnnotationPrefix + "hypervisor.memory_mib": "768", "other": "x"}); err != nil || c.Hypervisor.MemoryMiB != 768 {
		t.Fatalf("allowed override: %v, memory %d", err, c.Hypervisor.MemoryMiB)
	}
	if err := c.ApplyAnnotations(map[string]string{AnnotationPrefix + "hypervisor.memory_mib": "lots"}); err == nil {
		t.Fatal("non-numeric memory accepted")
	}
}

func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile(filepath.Join("..", "..", "config", "configuration.toml"))
	f.Add(string(b))
	f.Add("[hypervisor]\nvcpus = 2\n")
	f.Add("[agent]\ndial_timeout = \"1ms\"\n")
	f.Add("x = [")
	f.Fuzz(func(t *testing.T, text string) {
		c, err := Parse(text)
		if err != nil {
			return
		}
		// Whatever parses must be valid: the shim relies on it.
		if verr := c.Validate(); verr != nil {
			t.Fatalf("Parse accepted an invalid config: %v", verr)
		}
	})
}

func FuzzAnnotations(f *testing.F) {
	f.Add("hypervisor.memory_mib", "1024", true)
	f.Add("hypervisor.path", "/usr/bin/qemu", false)
	f.Add("hypervisor.kernel_params", "quiet", true)
	f.Fuzz(func(t *testing.T, key, val string, allow bool) {
		c := Default()
		if allow {
			if _, ok := annotationSetters[key]; ok {
				c.Hypervisor.EnableAnnotations = []string{key}
			}
		}
		before := c.Hypervisor.Path
		err := c.ApplyAnnotations(map[string]string{AnnotationPrefix + key: val})
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("annotation produced an invalid config: %v", verr)
			}
		}
		if !allow && c.Hypervisor.Path != before {
			t.Fatal("hypervisor path changed without an allowlist entry")
		}
	})
}

// A pod allowed to add kernel parameters still cannot turn on the guest's
// debug shell.
func TestAnnotationCannotEnableDebugShell(t *testing.T) {
	c, err := Parse("[hypervisor]\nenable_annotations = [\"hypervisor.kernel_params\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	err = c.ApplyAnnotations(map[string]string{AnnotationPrefix + "hypervisor.kernel_params": "quiet kata_go.debug_console=1"})
	if err == nil || !strings.Contains(err.Error(), "kata_go.debug_console=1") {
		t.Errorf("annotation enabling the debug shell: %v", err)
	}
}
