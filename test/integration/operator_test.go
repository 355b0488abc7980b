//go:build integration

package integration

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"

	"github.com/creack/pty"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/internal/ctrenv"
	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hypervisor"
)

// operatorConfig writes a configuration naming this checkout's guest files.
func operatorConfig(t *testing.T, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kata.toml")
	writeFile(t, p, "[hypervisor]\nkernel = \""+testenv.GuestFile("vmlinux")+"\"\ninitrd = \""+testenv.GuestFile("initrd.img")+"\"\n"+extra)
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
				writeFile(t, cfg, "[hypervisor]\nkernel = \"/nonexistent/vmlinux\"\ninitrd = \""+testenv.GuestFile("initrd.img")+"\"\n")
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
	return startDaemonWith(t, s, ctrenv.Options{ExtraConfig: extra})
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

// startMonitor runs `monitor` for d's pods on a free port and returns its
// /metrics URL; it is stopped (SIGTERM) at cleanup.
func startMonitor(t *testing.T, d *daemon) string {
	t.Helper()
	cmd := exec.Command(shimBinary(t), "monitor", "-listen", "127.0.0.1:0", "-config", d.KataCfg)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(unix.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("monitor: %v", err)
		}
	})
	line, err := bufio.NewReader(stderr).ReadString('\n')
	if err != nil {
		t.Fatalf("monitor did not start: %v", err)
	}
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("monitor said %q", line)
	}
	go func() { _, _ = io.Copy(io.Discard, stderr) }()
	return strings.TrimSpace(line[i:])
}

func scrape(t *testing.T, url string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("monitor output does not parse: %v", err)
	}
	return mfs
}

// series are the metrics of family name whose labels include want.
func series(mfs map[string]*dto.MetricFamily, name string, want map[string]string) []*dto.Metric {
	var out []*dto.Metric
next:
	for _, m := range mfs[name].GetMetric() {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		out = append(out, m)
	}
	return out
}

// TestMonitor: with three pods running, one scrape of `monitor` returns
// each pod's series labelled with its sandbox id and namespace, with
// plausible values; once the pods end their series are gone.
func TestMonitor(t *testing.T) {
	for _, spec := range daemons() {
		t.Run(spec.Name, func(t *testing.T) {
			d := startDaemon(t, spec)
			t.Cleanup(func() { d.assertClean(t) })
			url := startMonitor(t, d)
			ids := []string{"mon-a", "mon-b", "mon-c"}
			for _, id := range ids {
				if out, errOut, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, id, "sleep", "1000"); err != nil {
					t.Fatalf("run %s: %v: %s %s", id, err, out, errOut)
				}
				t.Cleanup(func() { d.remove(id) })
			}
			hw, _ := hypervisor.HardwareKVM()
			accel := "tcg"
			if hw {
				accel = "kvm"
			}
			mfs := scrape(t, url)
			if v := mfs["kata_go_monitor_pods"].GetMetric()[0].GetGauge().GetValue(); v != 3 {
				t.Errorf("monitor_pods = %v, want 3", v)
			}
			for _, id := range ids {
				pod := map[string]string{"sandbox_id": id, "namespace": "default"}
				with := func(k, v string) map[string]string {
					m := map[string]string{k: v}
					maps.Copy(m, pod)
					return m
				}
				for _, c := range []string{"qemu", "virtiofsd", "shim"} {
					for _, name := range []string{"kata_go_memory_rss_bytes", "kata_go_memory_pss_bytes"} {
						s := series(mfs, name, with("component", c))
						if len(s) != 1 || s[0].GetGauge().GetValue() <= 0 {
							t.Errorf("%s: %s{component=%q}: %v", id, name, c, s)
						}
					}
				}
				if s := series(mfs, "kata_go_memory_rss_bytes", with("component", "qemu")); len(s) == 1 && s[0].GetGauge().GetValue() < 64<<20 {
					t.Errorf("%s: QEMU RSS %v bytes: implausibly small for a booted guest", id, s[0].GetGauge().GetValue())
				}
				for _, phase := range []string{"vmm_spawn", "agent_connect", "guest_boot", "sandbox_start"} {
					s := series(mfs, "kata_go_boot_phase_seconds", with("phase", phase))
					if len(s) != 1 || s[0].GetHistogram().GetSampleCount() != 1 || s[0].GetHistogram().GetSampleSum() <= 0 {
						t.Errorf("%s: boot phase %s: %v", id, phase, s)
					}
				}
				for _, method := range []string{"Check", "CreateSandbox", "CreateContainer", "StartContainer"} {
					s := series(mfs, "kata_go_agent_rpc_duration_seconds", with("method", method))
					if len(s) == 0 || s[0].GetHistogram().GetSampleCount() < 1 {
						t.Errorf("%s: no agent RPC latency for %s", id, method)
					}
				}
				if s := series(mfs, "kata_go_accelerator_info", with("accelerator", accel)); len(s) != 1 {
					t.Errorf("%s: accelerator_info{accelerator=%q}: %v", id, accel, series(mfs, "kata_go_accelerator_info", pod))
				}
				total := series(mfs, "kata_go_guest_memory_bytes", with("kind", "total"))
				avail := series(mfs, "kata_go_guest_memory_bytes", with("kind", "available"))
				if len(total) != 1 || len(avail) != 1 || total[0].GetGauge().GetValue() < 64<<20 || avail[0].GetGauge().GetValue() > total[0].GetGauge().GetValue() {
					t.Errorf("%s: guest memory total %v available %v", id, total, avail)
				}
				if s := series(mfs, "kata_go_oom_kills_total", pod); len(s) != 1 || s[0].GetCounter().GetValue() != 0 {
					t.Errorf("%s: oom_kills_total %v, want 0", id, s)
				}
				if s := series(mfs, "kata_go_vm_exits_total", pod); (accel == "tcg") != (len(s) == 0) {
					t.Errorf("%s: %d VM-exit series under %s", id, len(s), accel)
				}
			}
			for _, id := range ids {
				d.remove(id)
			}
			// The shims are gone once no pod answers any more (the monitor
			// itself is this binary too, so assertClean waits for cleanup).
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				mfs = scrape(t, url)
				if mfs["kata_go_monitor_pods"].GetMetric()[0].GetGauge().GetValue() == 0 || time.Now().After(deadline) {
					break
				}
			}
			for _, name := range []string{"kata_go_memory_rss_bytes", "kata_go_boot_phase_seconds", "kata_go_guest_memory_bytes"} {
				if n := len(mfs[name].GetMetric()); n != 0 {
					t.Errorf("%s: %d series left after the pods ended", name, n)
				}
			}
			if v := mfs["kata_go_monitor_pods"].GetMetric()[0].GetGauge().GetValue(); v != 0 {
				t.Errorf("monitor_pods = %v after the pods ended", v)
			}
		})
	}
}

// TestMonitorCRI: a CRI pod's series carry its pod name and namespace
// (from CRI's annotations) besides its sandbox id and containerd's k8s.io
// namespace.
func TestMonitorCRI(t *testing.T) {
	for _, spec := range daemons() {
		t.Run(spec.Name, func(t *testing.T) {
			d := startCRI(t, spec)
			t.Cleanup(func() { d.assertClean(t) })
			url := startMonitor(t, d)
			id, _ := startPod(t, d, "monitored", false)
			mfs := scrape(t, url)
			want := map[string]string{"sandbox_id": id, "namespace": "k8s.io", "pod_name": "monitored", "pod_namespace": "default", "component": "qemu"}
			if s := series(mfs, "kata_go_memory_rss_bytes", want); len(s) != 1 || s[0].GetGauge().GetValue() <= 0 {
				t.Errorf("no QEMU RSS series labelled %v: %v", want, mfs["kata_go_memory_rss_bytes"].GetMetric())
			}
			crictl(t, d, "stopp", id)
			crictl(t, d, "rmp", id)
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				mfs = scrape(t, url)
				if len(mfs["kata_go_memory_rss_bytes"].GetMetric()) == 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("series left after the pod was removed: %v", mfs["kata_go_memory_rss_bytes"].GetMetric())
				}
			}
		})
	}
}

// syncBuf collects a pty's output for polling.
type syncBuf struct {
	mu sync.Mutex // guards b
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor writes input (again every second) until out has want.
func waitFor(t *testing.T, w io.Writer, out *syncBuf, input, want string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if _, err := io.WriteString(w, input); err != nil {
			t.Fatal(err)
		}
		for end := time.Now().Add(time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if strings.Contains(out.String(), want) {
				return
			}
		}
	}
	t.Fatalf("no %q after writing %q; output:\n%s", want, input, out.String())
}

// TestExec: `exec` gives a shell in the pod's VM outside every container
// (PID 1 is the agent), through the running shim: a resize of the
// operator's terminal reaches it, its exit status comes back, the shim's
// log audits it, and nothing is left. With debug_console off (the
// default) it is refused with the reason.
func TestExec(t *testing.T) {
	for _, spec := range daemons() {
		t.Run(spec.Name, func(t *testing.T) {
			t.Run("Enabled", func(t *testing.T) {
				d := startOperatorDaemon(t, spec, "[agent]\ndebug_console = true\n")
				t.Cleanup(func() { d.assertClean(t) })
				const id = "dbg"
				if out, errOut, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, id, "sleep", "1000"); err != nil {
					t.Fatalf("run: %v: %s %s", err, out, errOut)
				}
				t.Cleanup(func() { d.remove(id) })
				cmd := exec.Command(shimBinary(t), "exec", "-config", d.KataCfg, id)
				ptmx, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 30, Cols: 100})
				if err != nil {
					t.Fatal(err)
				}
				defer ptmx.Close()
				out := &syncBuf{}
				copied := make(chan struct{})
				go func() { _, _ = io.Copy(out, ptmx); close(copied) }()
				waitFor(t, ptmx, out, "cat /proc/1/cmdline; echo; stty size\n", "30 100")
				if !strings.Contains(out.String(), "/init") {
					t.Errorf("PID 1 of the shell's namespace is not the agent (/init):\n%s", out.String())
				}
				if err := pty.Setsize(ptmx, &pty.Winsize{Rows: 41, Cols: 123}); err != nil {
					t.Fatal(err)
				}
				waitFor(t, ptmx, out, "stty size\n", "41 123")
				if _, err := io.WriteString(ptmx, "exit 7\n"); err != nil {
					t.Fatal(err)
				}
				if err := cmd.Wait(); exitCode(err) != 7 {
					t.Errorf("exec exited %v (code %d), want the shell's 7; output:\n%s", err, exitCode(err), out.String())
				}
				<-copied
				// The shim log reaches containerd's asynchronously, and the
				// shim and agent log the close after the exit status is out.
				for _, want := range []string{"AUDIT debug shell opened", "AUDIT debug shell closed", "debug shell debug-1 closed"} {
					deadline := time.Now().Add(10 * time.Second)
					for len(shimLogLines(d, id, want)) == 0 && time.Now().Before(deadline) {
						time.Sleep(100 * time.Millisecond)
					}
					if len(shimLogLines(d, id, want)) == 0 {
						t.Errorf("no %q in the shim log for sandbox %s", want, id)
					}
				}
			})
			t.Run("RefusedByDefault", func(t *testing.T) {
				d := startDaemon(t, spec)
				t.Cleanup(func() { d.assertClean(t) })
				const id = "nodbg"
				if out, errOut, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, id, "sleep", "1000"); err != nil {
					t.Fatalf("run: %v: %s %s", err, out, errOut)
				}
				t.Cleanup(func() { d.remove(id) })
				out, code := runShim(t, "exec", "-config", d.KataCfg, id)
				if code != 1 || !strings.Contains(out, "debug_console is not enabled") {
					t.Errorf("exec with debug_console off: exit %d, output %q", code, out)
				}
				for deadline := time.Now().Add(10 * time.Second); len(shimLogLines(d, id, "AUDIT debug shell refused")) == 0 && time.Now().Before(deadline); {
					time.Sleep(100 * time.Millisecond)
				}
				if len(shimLogLines(d, id, "AUDIT debug shell refused")) == 0 {
					t.Errorf("the refusal is not in the shim log")
				}
				// The pod is unharmed.
				if got := d.taskStatus(id); got != "RUNNING" {
					t.Errorf("task %s after a refused exec", got)
				}
			})
		})
	}
}
