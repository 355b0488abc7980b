//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

// TestFaults: VM death, guest panic, containerd restart, bad input, no
// output loss. Against Debian's containerd; TestCtr covers both daemons.
func TestFaults(t *testing.T) {
	d := startDaemon(t, daemons()[0])
	for _, sc := range []struct {
		name string
		fn   func(*testing.T, *daemon)
	}{
		{"VMKilled", testVMKilled},
		{"GuestPanic", testGuestPanic},
		{"ContainerdRestart", testContainerdRestart},
		{"BadInput", testBadInput},
		{"NoLoss", testNoLoss},
		{"SocketsArePrivate", testSocketsPrivate},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Cleanup(func() { d.assertClean(t) })
			sc.fn(t, d)
		})
	}
}

// pidOf finds one process of this daemon whose command line has all words.
func (d *daemon) pidOf(t *testing.T, words ...string) int {
	t.Helper()
	pids := append(ctrenv.Pids(d.stateRoot, words...), ctrenv.Pids(d.sock, words...)...)
	if len(pids) == 0 {
		t.Fatalf("no process with %v", words)
	}
	return pids[0]
}

func testVMKilled(t *testing.T, d *daemon) {
	r := startRun(t, d, "vmkill", "sleep", "1000")
	qemu := childOf(d.pidOf(t, "-id vmkill "), "qemu-system")
	if qemu == 0 {
		t.Fatal("no QEMU under the pod's shim")
	}
	killed := time.Now()
	if err := syscallKill(qemu); err != nil {
		t.Fatal(err)
	}
	// README: "every task of the pod exits with status 255 ... ctr run returns 255".
	if code := r.wait(t, "the VM was killed"); code != 255 {
		t.Fatalf("ctr run exited %d after its VM was killed, want 255: %s", code, r.out.String())
	}
	if took := time.Since(killed); took > 5*time.Second {
		t.Errorf("task exit seen %s after the VM died, want within 5s", took)
	}
}

func testGuestPanic(t *testing.T, d *daemon) {
	if _, e, err := d.ctr("run", "-d", "--privileged", "--runtime", kataRuntime, image, "panic", "sleep", "1000"); err != nil {
		t.Fatalf("run -d: %v %s", err, e)
	}
	defer d.remove("panic")
	d.waitStatus(t, "panic", "RUNNING")
	start := time.Now()
	// The exec dies with the kernel; its own result does not matter.
	_, _, _ = d.ctr("task", "exec", "--exec-id", "crash", "panic", "sh", "-c", "echo c > /proc/sysrq-trigger")
	d.waitStatus(t, "panic", "STOPPED")
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("guest panic noticed after %s", took)
	}
}

func testContainerdRestart(t *testing.T, d *daemon) {
	if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, "survivor", "sleep", "1000"); err != nil {
		t.Fatalf("run -d: %v %s", err, e)
	}
	defer d.remove("survivor")
	d.waitStatus(t, "survivor", "RUNNING")
	d.restart(t)
	if st := d.taskStatus("survivor"); st != "RUNNING" {
		t.Fatalf("after containerd restart the task is %q, want RUNNING", st)
	}
	out, e, err := d.ctr("task", "exec", "--exec-id", "after", "survivor", "echo", "still-here")
	if err != nil || out != "still-here\n" {
		t.Fatalf("exec after restart: %q %v %s", out, err, e)
	}
	if _, e, err := d.ctr("task", "kill", "-s", "KILL", "survivor"); err != nil {
		t.Fatalf("kill after restart: %v %s", err, e)
	}
	d.waitStatus(t, "survivor", "STOPPED")
	if _, e, err := d.ctr("task", "delete", "survivor"); err != nil {
		t.Fatalf("delete after restart: %v %s", err, e)
	}
}

func testBadInput(t *testing.T, d *daemon) {
	cfg := func(extra string) string {
		p := filepath.Join(t.TempDir(), "kata.toml")
		writeFile(t, p, extra+fmt.Sprintf("\n[runtime]\nstate_root = %q\n", d.stateRoot))
		return p
	}
	hv := func(k, v string) string {
		base := fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n", testenv.GuestFile("vmlinux"), testenv.GuestFile("initrd.img"))
		return cfg(strings.Replace(base, k+" = ", k+" = \""+v+"\"\n#", 1))
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"missing executable", []string{image, "bad", "/no/such/bin"}, "/no/such/bin"},
		{"relative cwd", []string{"--cwd", "rel/dir", image, "bad", "true"}, "process.cwd"},
		{"host networking", []string{"--net-host", image, "bad", "true"}, "host networking"},
		{"missing kernel", []string{"--runtime-config-path", hv("kernel", "/nonexistent/vmlinux"), image, "bad", "true"}, "/nonexistent/vmlinux"},
		{"missing initrd", []string{"--runtime-config-path", hv("initrd", "/nonexistent/initrd.img"), image, "bad", "true"}, "/nonexistent/initrd.img"},
		{"missing qemu", []string{"--runtime-config-path", cfg("[hypervisor]\npath = \"/nonexistent/qemu\""), image, "bad", "true"}, "/nonexistent/qemu"},
		{"missing config", []string{"--runtime-config-path", "/nonexistent/kata.toml", image, "bad", "true"}, "/nonexistent/kata.toml"},
		{"invalid config", []string{"--runtime-config-path", cfg("[hypervisor\n"), image, "bad", "true"}, "line"},
		{"unknown key", []string{"--runtime-config-path", cfg("[hypervisor]\nmemroy = 1"), image, "bad", "true"}, "hypervisor.memroy"},
		{"bad value", []string{"--runtime-config-path", cfg("[hypervisor]\naccelerator = \"hvf\""), image, "bad", "true"}, "hypervisor.accelerator"},
		{"memory beyond the host", []string{"--memory-limit", "1000000000000000", image, "bad", "true"}, "more than the host has"},
		{"annotation swaps the kernel", []string{"--annotation", "io.kata-go.config.hypervisor.kernel=/tmp/evil", image, "bad", "true"}, "not allowed"},
	}
	for _, c := range cases {
		start := time.Now()
		_, errOut, err := d.ctr(append([]string{"run", "--rm", "--runtime", kataRuntime}, c.args...)...)
		took := time.Since(start)
		_, _, _ = d.ctr("task", "delete", "bad")
		_, _, _ = d.ctr("container", "rm", "bad")
		if err == nil {
			t.Errorf("%s: ctr run succeeded", c.name)
			continue
		}
		if !strings.Contains(errOut, c.want) {
			t.Errorf("%s: error does not name %q: %s", c.name, c.want, errOut)
		}
		if took > 5*time.Second {
			t.Errorf("%s: the error took %s, want under 5s", c.name, took)
		}
	}
	if os.Getuid() == 0 {
		p := cfg("")
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		// root reads a 0000 file; an unreadable one is a directory instead.
		_, errOut, err := d.ctr("run", "--rm", "--runtime", kataRuntime, "--runtime-config-path", filepath.Dir(p), image, "bad", "true")
		_, _, _ = d.ctr("container", "rm", "bad")
		if err == nil || !strings.Contains(errOut, filepath.Dir(p)) {
			t.Errorf("unreadable config: %v %s", err, errOut)
		}
	}
}

// noLossRuns is how many times NoLoss runs its container (200 by default).
func noLossRuns() int {
	if n, err := strconv.Atoi(os.Getenv("KATA_GO_NOLOSS_RUNS")); err == nil && n > 0 {
		return n
	}
	return 200
}

func testNoLoss(t *testing.T, d *daemon) {
	want := bytes.Repeat([]byte("0123456789abcde\n"), 4096) // 64 KiB
	for i := 0; i < noLossRuns(); i++ {
		out, e, err := runRm(d, "noloss", "sh", "-c", "yes 0123456789abcde | head -c 65536; exit 7")
		if exitCode(err) != 7 || out != string(want) {
			t.Fatalf("run %d: exit %d, %d bytes (want 7, %d): %s", i, exitCode(err), len(out), len(want), e)
		}
	}
}

func testSocketsPrivate(t *testing.T, d *daemon) {
	if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, "priv", "sleep", "1000"); err != nil {
		t.Fatalf("run -d: %v %s", err, e)
	}
	defer d.remove("priv")
	d.waitStatus(t, "priv", "RUNNING")
	dirs, _ := filepath.Glob(filepath.Join(d.stateRoot, "*"))
	if len(dirs) != 1 {
		t.Fatalf("want one sandbox dir, have %v", dirs)
	}
	if fi, err := os.Stat(dirs[0]); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("sandbox dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	socks, _ := filepath.Glob(filepath.Join(dirs[0], "*.sock"))
	if len(socks) < 2 {
		t.Fatalf("sockets: %v", socks)
	}
	for _, s := range socks {
		if fi, err := os.Stat(s); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", s, fi.Mode().Perm())
		}
	}
}
