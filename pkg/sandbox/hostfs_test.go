package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/internal/mountinfo"
)

// The real share on the host's mount table: what the shim mounts in the
// host-only tree shows in the export with its own flags, and the export's
// skeleton refuses every change. Needs root (CI runs the unit tier as root).
func TestRealShareLayout(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount (the CI runs this tier as root)")
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Cleanup(dir); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		if left, _ := mountinfo.Under(dir); len(left) > 0 {
			t.Errorf("left mounted: %v", left)
		}
	})
	fs := realFS{}
	if err := fs.PrepareState(dir); err != nil {
		t.Fatal(err)
	}
	skel, err := openSkeleton(filepath.Join(dir, hostTreeName))
	if err != nil {
		t.Fatal(err)
	}
	defer skel.close()

	rootSrc := t.TempDir()
	volSrc := t.TempDir()
	fileSrc := filepath.Join(t.TempDir(), "hosts")
	if err := os.WriteFile(fileSrc, []byte("127.0.0.1 localhost\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := skel.mkdir("", "c1"); err != nil {
		t.Fatal(err)
	}
	rt, err := skel.create("c1", "rootfs", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Bind(rootSrc, rt, ReadWrite); err != nil {
		t.Fatal(err)
	}
	rt.Close()
	if err := skel.mkdir("c1", "mounts"); err != nil {
		t.Fatal(err)
	}
	vt, err := skel.create("c1/mounts", "0-vol", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Bind(volSrc, vt, ReadOnly); err != nil {
		t.Fatal(err)
	}
	vt.Close()
	ft, err := skel.create("c1/mounts", "1-hosts", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Bind(fileSrc, ft, ReadWrite); err != nil {
		t.Fatal(err)
	}
	ft.Close()

	export := filepath.Join(dir, exportName)
	// The rootfs is writable through the export (the guest writes its own
	// rootfs); the read-only volume is not; the file bind is.
	if err := os.WriteFile(filepath.Join(export, "c1/rootfs/new"), []byte("x"), 0o644); err != nil {
		t.Fatalf("write in the rootfs through the export: %v", err)
	}
	if _, err := os.Stat(filepath.Join(rootSrc, "new")); err != nil {
		t.Fatalf("rootfs write did not reach its source: %v", err)
	}
	if err := os.WriteFile(filepath.Join(export, "c1/mounts/0-vol/x"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Fatalf("write in a read-only volume: %v, want EROFS", err)
	}
	if err := os.WriteFile(filepath.Join(export, "c1/mounts/1-hosts"), []byte("10.0.0.1 a\n"), 0o644); err != nil {
		t.Fatalf("write the hosts file: %v", err)
	}
	// The skeleton: nothing can be made, moved or removed in it.
	for what, try := range map[string]func() error{
		"create at root":     func() error { return os.WriteFile(filepath.Join(export, "x"), nil, 0o644) },
		"mkdir in container": func() error { return os.Mkdir(filepath.Join(export, "c1/new"), 0o755) },
		"symlink":            func() error { return os.Symlink("/etc/passwd", filepath.Join(export, "c1/mounts/2-etc_hosts")) },
		"hard link": func() error {
			return os.Link(filepath.Join(export, "c1/mounts/1-hosts"), filepath.Join(export, "c1/l"))
		},
		"rename": func() error { return os.Rename(filepath.Join(export, "c1"), filepath.Join(export, "c9")) },
		"remove": func() error { return unix.Rmdir(filepath.Join(export, "c1/mounts")) },
	} {
		if err := try(); err == nil {
			t.Errorf("%s in the export's skeleton succeeded", what)
		}
	}
	// A mount made after the export exists reaches it (slave propagation).
	if err := skel.mkdir("", "c2"); err != nil {
		t.Fatal(err)
	}
	r2, err := skel.create("c2", "rootfs", true)
	if err != nil {
		t.Fatal(err)
	}
	if err := fs.Bind(volSrc, r2, ReadWrite); err != nil {
		t.Fatal(err)
	}
	r2.Close()
	if err := os.WriteFile(filepath.Join(volSrc, "seen"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(export, "c2/rootfs/seen")); err != nil {
		t.Fatalf("a later mount did not reach the export: %v", err)
	}
	// A container's teardown takes its mounts from both views.
	if err := CleanupContainer(dir, "c1"); err != nil {
		t.Fatal(err)
	}
	if left, _ := mountinfo.Under(filepath.Join(export, "c1")); len(left) > 0 {
		t.Fatalf("container teardown left %v", left)
	}
}

// The state directory has a size cap: filling it stops at the cap.
func TestStateDirIsCapped(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount (the CI runs this tier as root)")
	}
	dir := filepath.Join(t.TempDir(), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := Cleanup(dir); err != nil {
			t.Error(err)
		}
	}()
	if err := (realFS{}).PrepareState(dir); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	written := 0
	for written < 4*stateDirSize {
		n, err := f.Write(buf)
		written += n
		if err != nil {
			break
		}
	}
	if written > stateDirSize {
		t.Fatalf("wrote %d bytes into a state dir capped at %d", written, stateDirSize)
	}
}
