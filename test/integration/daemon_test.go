//go:build integration

package integration

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

const (
	image       = ctrenv.Image
	kataRuntime = "io.containerd.kata.v2"
)

func daemons() []ctrenv.Spec { return ctrenv.Specs() }

// daemon wraps ctrenv.Daemon with test-failing helpers.
type daemon struct {
	*ctrenv.Daemon
	sock, stateRoot string
}

func startDaemon(t *testing.T, s ctrenv.Spec) *daemon { return startDaemonWith(t, s, ctrenv.Options{}) }

// startDaemonWith starts a private containerd of spec s that runs this
// checkout's shim, kernel and initrd, with what else opts asks for (the CRI
// plugin, extra configuration). Its log's tail is printed when the test
// fails; it stops at cleanup.
func startDaemonWith(t *testing.T, s ctrenv.Spec, opts ctrenv.Options) *daemon {
	t.Helper()
	needVM(t)
	testenv.Need(t, s.Containerd, s.Why, testenv.Exists(s.Containerd))
	testenv.Need(t, s.Ctr, s.Why, testenv.Exists(s.Ctr))
	shim := shimBinary(t)
	opts.ShimDir = filepath.Dir(shim)
	opts.Kernel, opts.Initrd = testenv.GuestFile("vmlinux"), testenv.GuestFile("initrd.img")
	cd, err := ctrenv.Start(s, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log tail:\n%s", s.Name, ctrenv.Tail(cd.Log.String(), 80))
		}
		cd.Stop()
	})
	return &daemon{Daemon: cd, sock: cd.Sock, stateRoot: cd.StateRoot}
}

// shimBinary is the shim `make build` wrote into this checkout.
func shimBinary(t *testing.T) string {
	t.Helper()
	shim := filepath.Join(testenv.RepoRoot(), "bin", "containerd-shim-kata-v2")
	testenv.Need(t, shim, "run make build", testenv.Exists(shim))
	return shim
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := writeFileErr(path, content); err != nil {
		t.Fatal(err)
	}
}

func (d *daemon) ctr(args ...string) (string, string, error) { return d.Ctr(args...) }
func (d *daemon) ctrIn(stdin []byte, args ...string) (string, string, error) {
	return d.CtrIn(stdin, args...)
}
func (d *daemon) ctrCmd(args ...string) *exec.Cmd { return d.CtrCmd(args...) }
func (d *daemon) taskStatus(id string) string     { return d.TaskStatus(id) }
func (d *daemon) remove(id string)                { d.Remove(id) }

func (d *daemon) waitStatus(t *testing.T, id, want string) {
	t.Helper()
	if err := d.WaitStatus(id, want); err != nil {
		t.Fatal(err)
	}
}

// assertClean fails if a VM, helper, shim, mount or state directory of
// this daemon is still there after a short grace period.
func (d *daemon) assertClean(t *testing.T) {
	t.Helper()
	if err := d.WaitClean(10 * time.Second); err != nil {
		t.Error(err)
	}
}

func (d *daemon) restart(t *testing.T) {
	t.Helper()
	if err := d.Restart(); err != nil {
		t.Fatal(err)
	}
}

func exitCode(err error) int { return ctrenv.ExitCode(err) }
