//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/ociimage"
)

const (
	image       = "docker.io/library/busybox:kata-go"
	kataRuntime = "io.containerd.kata.v2"
)

// daemonSpec is a containerd build the tests run against.
type daemonSpec struct {
	name, containerd, ctr string
	why                   string // how to get it, when missing
}

// daemons lists Debian's containerd 1.6 and containerd 2.x from the module
// proxy (built by .ci/run into /var/cache/kata-go).
func daemons() []daemonSpec {
	v2 := os.Getenv("KATA_GO_CONTAINERD2_DIR")
	if v2 == "" {
		v2 = "/var/cache/kata-go/containerd-v2.4.2"
	}
	return []daemonSpec{
		{"containerd-1.6", "/usr/bin/containerd", "/usr/bin/ctr", "apt-get install containerd"},
		{"containerd-2.4", filepath.Join(v2, "containerd"), filepath.Join(v2, "ctr"),
			"go install github.com/containerd/containerd/v2/cmd/{containerd,ctr}@v2.4.2 with GOBIN=" + v2},
	}
}

// daemon is a private containerd: its own root, state, socket and kata-go
// state root, all in one temp directory.
type daemon struct {
	spec      daemonSpec
	dir       string
	sock      string
	stateRoot string
	kataCfg   string
	cmd       *exec.Cmd
	done      chan error
	log       *syncBuffer
}

func startDaemon(t *testing.T, s daemonSpec) *daemon {
	t.Helper()
	needVM(t)
	need(t, s.containerd, s.why, exists(s.containerd))
	need(t, s.ctr, s.why, exists(s.ctr))
	shim := filepath.Join(repoRoot(), "bin", "containerd-shim-kata-v2")
	need(t, shim, "run make build", exists(shim))
	dir, err := os.MkdirTemp("", "kgo-ctd-")
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{spec: s, dir: dir, sock: filepath.Join(dir, "containerd.sock"), stateRoot: filepath.Join(dir, "kata"), log: &syncBuffer{}}
	d.kataCfg = filepath.Join(dir, "kata.toml")
	writeFile(t, d.kataCfg, fmt.Sprintf(`
[hypervisor]
kernel = %q
initrd = %q
[runtime]
state_root = %q
`, guestFile("vmlinux"), guestFile("initrd.img"), d.stateRoot))
	cfg := filepath.Join(dir, "config.toml")
	writeFile(t, cfg, fmt.Sprintf(`
version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.sock, d.sock+".ttrpc"))
	d.cmd = exec.Command(s.containerd, "--config", cfg)
	d.cmd.Env = append(os.Environ(),
		"PATH="+filepath.Dir(shim)+":"+os.Getenv("PATH"),
		"KATA_GO_CONFIG="+d.kataCfg)
	d.cmd.Stdout, d.cmd.Stderr = d.log, d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.done = make(chan error, 1)
	go func() { d.done <- d.cmd.Wait() }()
	t.Cleanup(func() { d.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, err := d.ctr("version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not come up: %s", s.name, d.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	archive := filepath.Join(dir, "busybox.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := ociimage.Busybox(f, image, "/bin/busybox"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, errOut, err := d.ctr("images", "import", archive); err != nil {
		t.Fatalf("import image: %v: %s %s", err, out, errOut)
	}
	return d
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// ctr runs the daemon's own ctr with a bounded time.
func (d *daemon) ctr(args ...string) (string, string, error) {
	return d.ctrIn(nil, args...)
}

func (d *daemon) ctrIn(stdin []byte, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.spec.ctr, append([]string{"-a", d.sock}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// exitCode is ctr's exit status (ctr run exits with the task's).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

func (d *daemon) ctrCmd(args ...string) *exec.Cmd {
	return exec.Command(d.spec.ctr, append([]string{"-a", d.sock}, args...)...)
}

// taskStatus is the STATUS column of `ctr task ls` for id ("" if absent).
func (d *daemon) taskStatus(id string) string {
	out, _, err := d.ctr("task", "ls")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

func (d *daemon) waitStatus(t *testing.T, id, want string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for d.taskStatus(id) != want {
		if time.Now().After(deadline) {
			t.Fatalf("task %s: status %q, want %q", id, d.taskStatus(id), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// remove deletes a task and its container, whatever state they are in.
func (d *daemon) remove(id string) {
	_, _, _ = d.ctr("task", "kill", "-s", "KILL", id)
	for i := 0; i < 100 && d.taskStatus(id) == "RUNNING"; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	_, _, _ = d.ctr("task", "delete", id)
	_, _, _ = d.ctr("container", "rm", id)
}

// assertClean waits briefly for teardown to finish, then fails if a VM,
// virtiofsd, shim, mount or state directory of this daemon remains.
func (d *daemon) assertClean(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := append(processesMatching(d.stateRoot), processesMatching("-address "+d.sock)...)
		mounts := mountsUnder(d.stateRoot)
		entries, _ := os.ReadDir(d.stateRoot)
		if len(procs) == 0 && len(mounts) == 0 && len(entries) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("left behind: processes %v, mounts %v, state dirs %d", procs, mounts, len(entries))
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// restart stops containerd (not its shims) and starts it again on the same
// root, state and socket.
func (d *daemon) restart(t *testing.T) {
	t.Helper()
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
	cmd := exec.Command(d.cmd.Path, d.cmd.Args[1:]...)
	cmd.Env, cmd.Stdout, cmd.Stderr = d.cmd.Env, d.log, d.log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.cmd = cmd
	d.done = make(chan error, 1)
	go func() { d.done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, err := d.ctr("version"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not come back: %s", tail(d.log.String(), 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemon) stop(t *testing.T) {
	if d.cmd.Process != nil {
		_ = d.cmd.Process.Signal(os.Interrupt)
		select {
		case <-d.done:
		case <-time.After(10 * time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
	}
	// Shims outlive containerd by design; end ours by pid.
	for _, p := range processesMatching("-address " + d.sock) {
		var pid int
		fmt.Sscan(strings.SplitN(p, ":", 2)[0], &pid)
		if pid > 0 {
			_ = syscallKill(pid)
		}
	}
	// Unmount whatever containerd left under its root (snapshots, shm).
	for _, m := range mountsUnder(d.dir) {
		_ = exec.Command("umount", "-l", m).Run()
	}
	if t.Failed() {
		t.Logf("%s log tail:\n%s", d.spec.name, tail(d.log.String(), 60))
	}
	os.RemoveAll(d.dir)
}

func tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}

// syncBuffer is a bytes.Buffer safe for the daemon's output goroutine.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 4<<20 {
		b.buf.Reset()
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
