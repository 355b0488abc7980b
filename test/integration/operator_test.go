//go:build integration

package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hypervisor"
)

func shimBinary(t *testing.T) string {
	t.Helper()
	shim := filepath.Join(repoRoot(), "bin", "containerd-shim-kata-v2")
	need(t, shim, "run make build", exists(shim))
	return shim
}

// operatorConfig writes a configuration naming this checkout's guest files.
func operatorConfig(t *testing.T, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kata.toml")
	writeFile(t, p, "[hypervisor]\nkernel = \""+guestFile("vmlinux")+"\"\ninitrd = \""+guestFile("initrd.img")+"\"\n"+extra)
	return p
}

// runShim runs an operator subcommand of the built shim.
func runShim(t *testing.T, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(shimBinary(t), args...)
	cmd.Env = append(os.Environ(), config.EnvPath+"=")
	out, err := cmd.CombinedOutput()
	if err != nil && exitCode(err) < 0 {
		t.Fatalf("%v: %v", args, err)
	}
	return string(out), exitCode(err)
}

// TestCheck: check passes on this host, says which accelerator auto picks
// and why, and names each problem that would stop a pod.
func TestCheck(t *testing.T) {
	needVM(t)
	t.Run("Passes", func(t *testing.T) {
		out, code := runShim(t, "check", "-config", operatorConfig(t, ""))
		if code != 0 {
			t.Fatalf("check failed (exit %d) on this host:\n%s", code, out)
		}
		hw, why := hypervisor.HardwareKVM()
		want := "auto picks TCG emulation (slow) because " + why
		if hw {
			want = "auto picks kvm: " + why
		}
		if !strings.Contains(out, want) {
			t.Errorf("check does not say %q:\n%s", want, out)
		}
		for _, name := range []string{"qemu", "seccomp", "virtiofsd", "kernel", "initrd", "vsock", "tun", "cgroup", "containerd"} {
			if !strings.Contains(out, " "+name+" ") {
				t.Errorf("no %s line:\n%s", name, out)
			}
		}
	})
	for _, tc := range []struct{ name, extra, want string }{
		{"MissingKernel", "", "FAIL kernel       /nonexistent/vmlinux"},
		{"BadConfigKey", "colour = \"red\"\n", "hypervisor.colour"},
		{"MissingVirtiofsd", "virtiofsd_path = \"/nonexistent/virtiofsd\"\n", "FAIL virtiofsd    /nonexistent/virtiofsd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := operatorConfig(t, tc.extra)
			if tc.name == "MissingKernel" {
				writeFile(t, cfg, "[hypervisor]\nkernel = \"/nonexistent/vmlinux\"\ninitrd = \""+guestFile("initrd.img")+"\"\n")
			}
			out, code := runShim(t, "check", "-config", cfg)
			if code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, out)
			}
			if !strings.Contains(out, tc.want) {
				t.Errorf("output does not name %q:\n%s", tc.want, out)
			}
		})
	}
}

// TestEnv: env prints the effective configuration, which the shim's parser
// reads back to the same values.
func TestEnv(t *testing.T) {
	cfgPath := operatorConfig(t, "vcpus = 2\n[runtime]\ndebug = true\n")
	out, code := runShim(t, "env", "-config", cfgPath)
	if code != 0 {
		t.Fatalf("env exit %d:\n%s", code, out)
	}
	want, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := config.Parse(out)
	if err != nil {
		t.Fatalf("env output does not parse: %v\n%s", err, out)
	}
	got.Source = want.Source
	if !reflect.DeepEqual(got, want) {
		t.Errorf("env output parses to\n%+v\nwant\n%+v", got, want)
	}
	if !strings.Contains(out, "# qemu: QEMU emulator version") {
		t.Errorf("no QEMU version in env output:\n%s", out)
	}
}
