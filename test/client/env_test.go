//go:build integration

package client

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	image       = ctrenv.Image
	kataRuntime = "io.containerd.kata.v2"
	runcRuntime = "io.containerd.runc.v2"
)

// repoRoot is the checkout this module lives in.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func guestFile(name string) string { return filepath.Join(repoRoot(), "guest", "out", name) }

// need stops the test when a prerequisite is absent, saying which and why.
// Under CI=true a missing part is a failure: the tier must run there.
func need(t testing.TB, what, why string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	msg := "missing " + what + ": " + why
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI=true: the integration tier must run)")
	}
	t.Skip(msg)
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

func onPath(bin string) bool { _, err := exec.LookPath(bin); return err == nil }

// daemon is a private containerd with kata-go and runc available.
type daemon struct {
	*ctrenv.Daemon
}

func startDaemon(t *testing.T, s ctrenv.Spec) *daemon {
	t.Helper()
	need(t, "root", "the VM, mounts and containerd need it", os.Geteuid() == 0)
	need(t, "qemu-system-x86_64", "apt-get install qemu-system-x86", onPath("qemu-system-x86_64"))
	need(t, "runc", "apt-get install runc (the reference runtime)", onPath("runc"))
	need(t, "guest kernel", "run make guest", exists(guestFile("vmlinux")))
	need(t, "guest initrd", "run make guest", exists(guestFile("initrd.img")))
	need(t, s.Containerd, s.Why, exists(s.Containerd))
	shim := filepath.Join(repoRoot(), "bin", "containerd-shim-kata-v2")
	need(t, shim, "run make build", exists(shim))
	cd, err := ctrenv.Start(s, ctrenv.Options{ShimDir: filepath.Dir(shim), Kernel: guestFile("vmlinux"), Initrd: guestFile("initrd.img")})
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{cd}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s log tail:\n%s", s.Name, ctrenv.Tail(cd.Log.String(), 60))
		}
		cd.Stop()
	})
	return d
}

// assertClean fails if a VM, helper, shim, mount or state directory of
// this daemon is still there after a short grace period.
func (d *daemon) assertClean(t *testing.T) {
	t.Helper()
	if err := d.WaitClean(10 * time.Second); err != nil {
		t.Error(err)
	}
}
