//go:build integration

package client

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"

	"go.uber.org/goleak"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	image       = ctrenv.Image
	kataRuntime = "io.containerd.kata.v2"
	runcRuntime = "io.containerd.runc.v2"
)

// daemon is a private containerd with kata-go and runc available.
type daemon struct {
	*ctrenv.Daemon
}

func startDaemon(t *testing.T, s ctrenv.Spec) *daemon {
	t.Helper()
	testenv.Need(t, "root", "the VM, mounts and containerd need it", os.Geteuid() == 0)
	testenv.Need(t, "qemu-system-x86_64", "apt-get install qemu-system-x86", testenv.OnPath("qemu-system-x86_64"))
	testenv.Need(t, "runc", "apt-get install runc (the reference runtime)", testenv.OnPath("runc"))
	testenv.Need(t, "guest kernel", "run make guest", testenv.Exists(testenv.GuestFile("vmlinux")))
	testenv.Need(t, "guest initrd", "run make guest", testenv.Exists(testenv.GuestFile("initrd.img")))
	testenv.Need(t, s.Containerd, s.Why, testenv.Exists(s.Containerd))
	shim := filepath.Join(testenv.RepoRoot(), "bin", "containerd-shim-kata-v2")
	testenv.Need(t, shim, "run make build", testenv.Exists(shim))
	cd, err := ctrenv.Start(s, ctrenv.Options{ShimDir: filepath.Dir(shim), Kernel: testenv.GuestFile("vmlinux"), Initrd: testenv.GuestFile("initrd.img")})
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
