//go:build integration

package integration

import (
	"bytes"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
)

// TestCtr drives the shim with the real ctr against each containerd.
func TestCtr(t *testing.T) {
	for _, spec := range daemons() {
		t.Run(spec.Name, func(t *testing.T) {
			d := startDaemon(t, spec)
			for _, sc := range ctrScenarios {
				t.Run(sc.name, func(t *testing.T) {
					t.Cleanup(func() { d.assertClean(t) })
					sc.fn(t, d)
				})
			}
		})
	}
}

var ctrScenarios = []struct {
	name string
	fn   func(*testing.T, *daemon)
}{
	{"EchoAndExitCodes", testEchoAndExitCodes},
	{"UnameIsTheGuests", testUname},
	{"KillTermAndKill", testKill},
	{"DetachedThenExec", testExec},
	{"StdinPipedThrough", testStdin},
	{"TTYAndResize", testTTY},
	{"PauseResume", testPauseResume},
	{"MetricsAndPs", testMetricsPs},
	{"OneMiBAtExit20Times", testOneMiB},
	{"TwoContainersTwoVMs", testTwoVMs},
	{"ShimKilledThenDelete", testShimKilled},
	{"OOMKillReported", testOOM},
	{"TaskPidIsVMM", testTaskPidIsVMM},
}

// testOOM: a container over its memory limit is OOM-killed in the guest;
// containerd gets TaskOOM and the task exits 137.
func testOOM(t *testing.T, d *daemon) {
	events := d.ctrCmd("events")
	var evOut strings.Builder
	var mu sync.Mutex
	events.Stdout = writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return evOut.Write(p)
	})
	if err := events.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = events.Process.Kill(); _ = events.Wait() }()
	_, e, err := d.ctr("run", "--rm", "--runtime", kataRuntime, "--memory-limit", "33554432", image, "oom", "sh", "-c", "tail /dev/zero")
	if exitCode(err) != 137 {
		t.Fatalf("over-limit container exit %d, want 137: %s", exitCode(err), e)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := evOut.String()
		mu.Unlock()
		if strings.Contains(got, "/tasks/oom") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no /tasks/oom event; events:\n%s", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func runRm(d *daemon, id string, args ...string) (string, string, error) {
	return d.ctr(append([]string{"run", "--rm", "--runtime", kataRuntime, image, id}, args...)...)
}

func testEchoAndExitCodes(t *testing.T, d *daemon) {
	out, errOut, err := runRm(d, "echo", "sh", "-c", "echo hello; echo oops >&2")
	if err != nil || out != "hello\n" || !strings.Contains(errOut, "oops") {
		t.Fatalf("echo: out %q err %q: %v", out, errOut, err)
	}
	for _, c := range []struct {
		script string
		want   int
	}{{"exit 0", 0}, {"exit 3", 3}, {"sleep 1000 & kill -9 $!; wait $!", 137}} {
		_, errOut, err := runRm(d, "code", "sh", "-c", c.script)
		if got := exitCode(err); got != c.want {
			t.Fatalf("%q: exit %d, want %d (%s)", c.script, got, c.want, errOut)
		}
	}
}

func testUname(t *testing.T, d *daemon) {
	out, errOut, err := runRm(d, "uname", "uname", "-r")
	if err != nil {
		t.Fatalf("uname: %v: %s", err, errOut)
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	host := string(bytes.TrimRight(u.Release[:], "\x00"))
	if got := strings.TrimSpace(out); got == "" || got == host {
		t.Fatalf("uname -r in the container is %q, the host's is %q: not running in the guest", got, host)
	}
}

// runAndKill starts ctr run in the foreground, signals the task once it
// runs and returns ctr's exit code (the task's status).
func runAndKill(t *testing.T, d *daemon, id, signal string, args ...string) int {
	t.Helper()
	r := startRun(t, d, id, args...)
	time.Sleep(200 * time.Millisecond) // let the shell install its trap
	if o, e, err := d.ctr("task", "kill", "-s", signal, id); err != nil {
		t.Fatalf("task kill %s: %v %s %s", signal, err, o, e)
	}
	return r.wait(t, "SIG"+signal)
}

// foreground is `ctr run --rm` running in the background of a test.
type foreground struct {
	d    *daemon
	id   string
	cmd  *exec.Cmd
	out  bytes.Buffer
	done chan error
}

// startRun starts `ctr run --rm` and returns once the task runs.
func startRun(t *testing.T, d *daemon, id string, args ...string) *foreground {
	t.Helper()
	r := &foreground{d: d, id: id, done: make(chan error, 1)}
	r.cmd = d.ctrCmd(append([]string{"run", "--rm", "--runtime", kataRuntime, image, id}, args...)...)
	r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { r.done <- r.cmd.Wait() }()
	d.waitStatus(t, id, "RUNNING")
	return r
}

// wait returns ctr's exit code (the task's status); after 30 s it fails
// the test, saying what ctr was waiting after.
func (r *foreground) wait(t *testing.T, after string) int {
	t.Helper()
	select {
	case err := <-r.done:
		return exitCode(err)
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
		r.d.remove(r.id)
		t.Fatalf("ctr run still waiting 30s after %s: %s", after, r.out.String())
		return -1
	}
}

func testKill(t *testing.T, d *daemon) {
	if got := runAndKill(t, d, "term", "TERM", "sh", "-c", `trap "exit 143" TERM; sleep 1000 & wait`); got != 143 {
		t.Fatalf("TERM: exit %d, want 143", got)
	}
	if got := runAndKill(t, d, "kill", "KILL", "sleep", "1000"); got != 137 {
		t.Fatalf("KILL: exit %d, want 137", got)
	}
}

func testExec(t *testing.T, d *daemon) {
	if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, "bg", "sleep", "1000"); err != nil {
		t.Fatalf("run -d: %v %s", err, e)
	}
	defer d.remove("bg")
	d.waitStatus(t, "bg", "RUNNING")
	out, e, err := d.ctr("task", "exec", "--exec-id", "x1", "bg", "sh", "-c", "echo from-exec; exit 5")
	if exitCode(err) != 5 || out != "from-exec\n" {
		t.Fatalf("exec: out %q err %q code %d", out, e, exitCode(err))
	}
	out, e, err = d.ctr("task", "exec", "--exec-id", "x2", "bg", "cat", "/proc/1/cmdline")
	if err != nil || !strings.HasPrefix(out, "sleep") {
		t.Fatalf("exec sees PID 1 %q (%s): %v", out, e, err)
	}
	start := time.Now()
	_, e, err = d.ctr("task", "exec", "--exec-id", "x3", "bg", "/no/such/tool")
	if err == nil || !strings.Contains(e, "/no/such/tool") || time.Since(start) > 5*time.Second {
		t.Fatalf("exec of a missing binary: %v after %s: %s", err, time.Since(start), e)
	}
}

func testStdin(t *testing.T, d *daemon) {
	out, e, err := d.ctrIn([]byte("hi\n"), "run", "--rm", "--runtime", kataRuntime, image, "stdin", "sh", "-c", "read l; echo got:$l")
	if err != nil || out != "got:hi\n" {
		t.Fatalf("stdin: out %q err %q: %v", out, e, err)
	}
	// Input that ends before the task is created: the process sees EOF
	// without CloseIO (ctr wires its CloseIO up only once the task
	// exists), as runc's shim gives it when the input ends within runc
	// create; kata-go holds stdin open only from the guest's create on, so
	// a short input always ends first. (Under runc it is a race that runc
	// often loses, so runc is not asked here.)
	out, e, err = d.ctrIn([]byte("a\nb\n"), "run", "--rm", "--runtime", kataRuntime, image, "stdin-eof", "cat")
	if err != nil || out != "a\nb\n" {
		t.Fatalf("cat of a short input: out %q err %q: %v", out, e, err)
	}
}

func testTTY(t *testing.T, d *daemon) {
	cmd := d.ctrCmd("run", "-t", "--rm", "--runtime", kataRuntime, image, "tty", "sh")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 100})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mu sync.Mutex
	var screen bytes.Buffer
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := f.Read(b)
			mu.Lock()
			screen.Write(b[:n])
			mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	seen := func(s string) bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(screen.String(), s)
	}
	waitFor := func(s string, send string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !seen(s) {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				_ = cmd.Process.Kill()
				t.Fatalf("terminal never showed %q; screen: %q", s, screen.String())
			}
			if send != "" {
				io.WriteString(f, send)
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	waitFor("40 100", "stty size\n")
	if err := pty.Setsize(f, &pty.Winsize{Rows: 50, Cols: 120}); err != nil {
		t.Fatal(err)
	}
	waitFor("50 120", "stty size\n")
	io.WriteString(f, "exit 7\n")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if exitCode(err) != 7 {
			t.Fatalf("tty shell exit %d, want 7", exitCode(err))
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("ctr run -t did not end after exit")
	}
}

func testPauseResume(t *testing.T, d *daemon) {
	if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, "pr", "sleep", "1000"); err != nil {
		t.Fatalf("run -d: %v %s", err, e)
	}
	defer d.remove("pr")
	d.waitStatus(t, "pr", "RUNNING")
	if _, e, err := d.ctr("task", "pause", "pr"); err != nil {
		t.Fatalf("pause: %v %s", err, e)
	}
	d.waitStatus(t, "pr", "PAUSED")
	if _, e, err := d.ctr("task", "resume", "pr"); err != nil {
		t.Fatalf("resume: %v %s", err, e)
	}
	d.waitStatus(t, "pr", "RUNNING")
}

func testMetricsPs(t *testing.T, d *daemon) {
	if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, "mp", "sh", "-c", "sleep 1000 & sleep 1000"); err != nil {
		t.Fatalf("run -d: %v %s", err, e)
	}
	defer d.remove("mp")
	d.waitStatus(t, "mp", "RUNNING")
	out, e, err := d.ctr("task", "metrics", "mp")
	if err != nil || !strings.Contains(out, "memory.usage") || !strings.Contains(out, "pids.current") {
		t.Fatalf("metrics: %v %s %s", err, out, e)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, e, err = d.ctr("task", "ps", "mp")
		if err != nil {
			t.Fatalf("ps: %v %s", err, e)
		}
		if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) >= 3 {
			return // header + the shell + its two sleeps (at least two)
		}
		if time.Now().After(deadline) {
			t.Fatalf("ps shows too few processes:\n%s", out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func testOneMiB(t *testing.T, d *daemon) {
	want := bytes.Repeat([]byte("abcdefghijklmno\n"), 1<<16)
	for i := 0; i < 20; i++ {
		out, e, err := runRm(d, "big", "sh", "-c", "yes abcdefghijklmno | head -c 1048576")
		if err != nil || out != string(want) {
			t.Fatalf("run %d: got %d bytes (want %d): %v %s", i, len(out), len(want), err, e)
		}
	}
}

func testTwoVMs(t *testing.T, d *daemon) {
	for _, id := range []string{"vm1", "vm2"} {
		if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, id, "sleep", "1000"); err != nil {
			t.Fatalf("run -d %s: %v %s", id, err, e)
		}
		defer d.remove(id)
	}
	d.waitStatus(t, "vm1", "RUNNING")
	d.waitStatus(t, "vm2", "RUNNING")
	qemus := 0
	for _, p := range processesMatching(d.stateRoot) {
		if strings.Contains(p, "qemu-system") {
			qemus++
		}
	}
	if qemus != 2 {
		t.Fatalf("%d qemu processes for two containers, want 2", qemus)
	}
}

func testShimKilled(t *testing.T, d *daemon) {
	if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, "victim", "sleep", "1000"); err != nil {
		t.Fatalf("run -d: %v %s", err, e)
	}
	d.waitStatus(t, "victim", "RUNNING")
	shims := processesMatching("-id victim -address " + d.sock)
	if len(shims) != 1 {
		t.Fatalf("want one shim for victim, found %v", shims)
	}
	var pid int
	fmt.Sscan(strings.SplitN(shims[0], ":", 2)[0], &pid)
	if err := syscallKill(pid); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// containerd notices the shim's death, runs `shim delete` and marks
		// the task stopped; delete then removes it.
		_, _, _ = d.ctr("task", "delete", "victim")
		if d.taskStatus("victim") == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task still listed after the shim was killed: %s", d.taskStatus("victim"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, _, _ = d.ctr("container", "rm", "victim")
}
