//go:build integration

// Package integration runs kata-go with its real parts: QEMU, the guest
// kernel and agent, containerd and ctr. It needs root. Outside CI a missing
// part skips the test with what is missing and why; in CI (CI=true) it fails.
package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kata-go/kata-go/internal/testenv"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// needVM checks what booting a guest takes.
func needVM(t testing.TB) {
	testenv.Need(t, "root", "the VM, mounts and containerd need it", os.Geteuid() == 0)
	testenv.Need(t, "qemu-system-x86_64", "apt-get install qemu-system-x86", testenv.OnPath("qemu-system-x86_64"))
	testenv.Need(t, "/usr/lib/qemu/virtiofsd", "apt-get install qemu-system-common", testenv.Exists("/usr/lib/qemu/virtiofsd"))
	testenv.Need(t, "guest kernel "+testenv.GuestFile("vmlinux"), "run make guest", testenv.Exists(testenv.GuestFile("vmlinux")))
	testenv.Need(t, "guest initrd "+testenv.GuestFile("initrd.img"), "run make guest", testenv.Exists(testenv.GuestFile("initrd.img")))
	testenv.Need(t, "/bin/busybox (static)", "apt-get install busybox-static", testenv.Exists("/bin/busybox"))
}

// busyboxRootfs fills dir with a static busybox and its applet links.
func busyboxRootfs(t testing.TB, dir string) {
	t.Helper()
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "root"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(filepath.Join(dir, "tmp"), 0o1777); err != nil {
		t.Fatal(err)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range splitLines(string(out)) {
		if name == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", name)); err != nil && !os.IsExist(err) {
			t.Fatal(err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/tmp:/bin/sh\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\nextra:x:2000:user\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			if i > start {
				out = append(out, s[start:i])
			}
			start = i + 1
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}
