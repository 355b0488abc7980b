//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kata-go/kata-go/internal/ctrenv"
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

// startOperatorDaemon is startDaemon with extra kata-go configuration.
func startOperatorDaemon(t *testing.T, s ctrenv.Spec, extra string) *daemon {
	t.Helper()
	needVM(t)
	need(t, s.Containerd, s.Why, exists(s.Containerd))
	need(t, s.Ctr, s.Why, exists(s.Ctr))
	shim := shimBinary(t)
	cd, err := ctrenv.Start(s, ctrenv.Options{ShimDir: filepath.Dir(shim), Kernel: guestFile("vmlinux"), Initrd: guestFile("initrd.img"), ExtraConfig: extra})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log tail:\n%s", s.Name, ctrenv.Tail(cd.Log.String(), 60))
		}
		cd.Stop()
	})
	return &daemon{Daemon: cd, sock: cd.Sock, stateRoot: cd.StateRoot}
}

// shimLogLines are the lines of containerd's log that a kata-go shim
// wrote about sandbox id with the given message text in them.
func shimLogLines(d *daemon, id, substr string) []string {
	var out []string
	for _, l := range splitLines(d.Log.String()) {
		if strings.Contains(l, "sandbox_id="+id) && strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return out
}

// TestGuestLog: the agent's own log lines and the guest console reach
// containerd's log through the shim, tagged with the sandbox id, and a
// guest flooding its console is rate-limited there.
func TestGuestLog(t *testing.T) {
	for _, spec := range daemons() {
		t.Run(spec.Name, func(t *testing.T) {
			d := startOperatorDaemon(t, spec, "")
			t.Cleanup(func() { d.assertClean(t) })
			const id = "guestlog"
			// The guest kernel floods its console: every message level
			// printed, then SysRq's task dump (hundreds of lines) again and again.
			script := `echo 8 > /proc/sys/kernel/printk; for i in 1 2 3 4 5 6; do echo t > /proc/sysrq-trigger; done`
			if out, errOut, err := d.ctr("run", "--rm", "--privileged", "--runtime", kataRuntime, image, id, "sh", "-ec", script); err != nil {
				t.Fatalf("run: %v: %s %s", err, out, errOut)
			}
			// The agent logs "serving on …" when its channel is up.
			if agent := shimLogLines(d, id, "source=agent"); len(agent) == 0 || !containsAny(agent, "serving on") {
				t.Errorf("no agent line for sandbox %s in containerd's log (%d agent lines)", id, len(agent))
			}
			console := shimLogLines(d, id, "source=console")
			var dropped int
			for _, l := range shimLogLines(d, id, "guest log lines dropped") {
				var n int
				if _, err := fmt.Sscanf(l[strings.Index(l, "dropped=")+len("dropped="):], "%d", &n); err != nil {
					t.Fatalf("drop report without a count: %s", l)
				}
				dropped += n
			}
			if !containsAny(console, "sysrq") && !containsAny(console, "SysRq") {
				t.Errorf("the SysRq dump's console lines did not reach containerd's log (%d console lines)", len(console))
			}
			if dropped == 0 {
				t.Errorf("%d console lines logged and none dropped: the burst was not rate-limited", len(console))
			}
			t.Logf("%d console lines logged, %d dropped by the limit", len(console), dropped)
		})
	}
}

func containsAny(lines []string, substr string) bool {
	for _, l := range lines {
		if strings.Contains(l, substr) {
			return true
		}
	}
	return false
}
