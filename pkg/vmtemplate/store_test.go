package vmtemplate

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/kata-go/kata-go/internal/testenv"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testKey(t *testing.T) Key {
	dir := t.TempDir()
	var ids []FileID
	for _, f := range []string{"qemu", "vmlinux", "initrd"} {
		p := filepath.Join(dir, f)
		if err := os.WriteFile(p, []byte(f), 0o644); err != nil {
			t.Fatal(err)
		}
		id, err := IdentifyFile(p)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return Key{QEMU: ids[0], Kernel: ids[1], Initrd: ids[2], Machine: "microvm", Accelerator: "tcg", VCPUs: 1, MemoryMiB: 1}
}

// fakeMaker writes what a VM would: a sparse memory file of the VM's size
// and a device state.
func fakeMaker(t *testing.T, calls *int) Maker {
	return func(mem, state string, secret []byte) error {
		*calls++
		f, err := os.Create(mem)
		if err != nil {
			return err
		}
		if err := f.Truncate(1 << 20); err != nil {
			return err
		}
		f.Close()
		return os.WriteFile(state, []byte("device state"), 0o600)
	}
}

func TestCreateThenLookup(t *testing.T) {
	s := Store{Dir: filepath.Join(testenv.DiskTempDir(t), "templates")}
	k := testKey(t)
	if _, err := s.Lookup(k); !errors.Is(err, ErrNone) {
		t.Fatalf("empty store: %v, want ErrNone", err)
	}
	calls := 0
	secret := []byte("0123456789abcdef0123456789abcdef")
	made, err := s.Create(k, secret, fakeMaker(t, &calls))
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Lookup(k)
	if err != nil {
		t.Fatal(err)
	}
	if got.Memory != made.Memory || string(got.Secret) != string(secret) || calls != 1 {
		t.Fatalf("lookup %+v after create %+v (%d makes)", got, made, calls)
	}
	// A second Create finds the finished one instead of making another.
	if _, err := s.Create(k, secret, fakeMaker(t, &calls)); err != nil || calls != 1 {
		t.Fatalf("second create: %v, %d makes", err, calls)
	}
	for _, p := range []string{s.Dir, got.Dir, got.State, filepath.Join(got.Dir, secretFile)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is %v: the store is root's alone", p, fi.Mode())
		}
	}
	ms, err := s.List()
	if err != nil || len(ms) != 1 || ms[0].Hash != k.Hash() {
		t.Fatalf("list: %v %+v", err, ms)
	}
	if err := s.Delete(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Fatalf("store left after delete: %v", err)
	}
}

// Anything that changes the VM's shape or the files it boots from is
// another key, so a restore never uses a template made for another VM.
func TestKeyCoversTheVMShape(t *testing.T) {
	k := testKey(t)
	base := k.Hash()
	changes := map[string]func(*Key){
		"memory":  func(k *Key) { k.MemoryMiB++ },
		"vcpus":   func(k *Key) { k.VCPUs++ },
		"nics":    func(k *Key) { k.NICs++ },
		"machine": func(k *Key) { k.Machine = "q35" },
		"params":  func(k *Key) { k.KernelParams = []string{"x"} },
		"debug":   func(k *Key) { k.Debug = true },
		"cpu":     func(k *Key) { k.CPUModel = "max" },
		"accel":   func(k *Key) { k.Accelerator = "kvm" },
		"tb":      func(k *Key) { k.TBSizeMiB = 64 },
	}
	for name, change := range changes {
		c := k
		change(&c)
		if c.Hash() == base {
			t.Errorf("%s: same key", name)
		}
	}
	// A replaced kernel (new inode, new mtime) is another key.
	if err := os.Remove(k.Kernel.Path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(k.Kernel.Path, []byte("vmlinux, rebuilt"), 0o644); err != nil {
		t.Fatal(err)
	}
	id, err := IdentifyFile(k.Kernel.Path)
	if err != nil {
		t.Fatal(err)
	}
	c := k
	c.Kernel = id
	if c.Hash() == base {
		t.Error("replaced kernel: same key")
	}
}

func TestLookupRefusesDamagedTemplates(t *testing.T) {
	damage := map[string]func(t *testing.T, tp *Template){
		"state altered": func(t *testing.T, tp *Template) {
			if err := os.WriteFile(tp.State, []byte("device statX"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"state gone":  func(t *testing.T, tp *Template) { os.Remove(tp.State) },
		"memory gone": func(t *testing.T, tp *Template) { os.Remove(tp.Memory) },
		"memory truncated": func(t *testing.T, tp *Template) {
			if err := os.Truncate(tp.Memory, 4096); err != nil {
				t.Fatal(err)
			}
		},
		"meta garbage": func(t *testing.T, tp *Template) {
			if err := os.WriteFile(filepath.Join(tp.Dir, metaFile), []byte("{"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"state is a symlink": func(t *testing.T, tp *Template) {
			os.Remove(tp.State)
			if err := os.Symlink("/etc/passwd", tp.State); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, d := range damage {
		t.Run(name, func(t *testing.T) {
			s := Store{Dir: testenv.DiskTempDir(t)}
			k := testKey(t)
			calls := 0
			tp, err := s.Create(k, []byte("secret"), fakeMaker(t, &calls))
			if err != nil {
				t.Fatal(err)
			}
			d(t, tp)
			if _, err := s.Lookup(k); err == nil || errors.Is(err, ErrNone) {
				t.Fatalf("lookup of a damaged template: %v, want an error saying why", err)
			}
			// The next maker replaces it.
			if _, err := s.Create(k, []byte("secret"), fakeMaker(t, &calls)); err != nil || calls != 2 {
				t.Fatalf("remake: %v, %d makes", err, calls)
			}
			if _, err := s.Lookup(k); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// While one maker works, another gets ErrBusy at once (it boots cold)
// and nothing it does touches the template being made.
func TestConcurrentMakersOneWins(t *testing.T) {
	s := Store{Dir: testenv.DiskTempDir(t)}
	k := testKey(t)
	calls := 0
	inner := make(chan error, 1)
	_, err := s.Create(k, []byte("secret"), func(mem, state string, secret []byte) error {
		_, err := s.Create(k, []byte("other"), func(string, string, []byte) error {
			t.Error("second maker ran while the first held the lock")
			return nil
		})
		inner <- err
		return fakeMaker(t, &calls)(mem, state, secret)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-inner; !errors.Is(err, ErrBusy) {
		t.Fatalf("second maker: %v, want ErrBusy", err)
	}
	tp, err := s.Lookup(k)
	if err != nil || string(tp.Secret) != "secret" {
		t.Fatalf("template after the race: %v %+v", err, tp)
	}
}

func TestFailedMakeLeavesNothing(t *testing.T) {
	s := Store{Dir: testenv.DiskTempDir(t)}
	k := testKey(t)
	if _, err := s.Create(k, []byte("secret"), func(string, string, []byte) error { return errors.New("boom") }); err == nil {
		t.Fatal("a failed make gave a template")
	}
	ents, _ := os.ReadDir(s.Dir)
	for _, e := range ents {
		if e.IsDir() {
			t.Errorf("left %s", e.Name())
		}
	}
	if _, err := s.Lookup(k); !errors.Is(err, ErrNone) {
		t.Fatalf("lookup after a failed make: %v", err)
	}
}

// A store on a memory filesystem is refused, for making and for using a
// template: there every page a clone's guest first touches would be
// allocated in the shared memory file (see checkStoreFS).
func TestMemoryFSRefused(t *testing.T) {
	shm, err := os.MkdirTemp("/dev/shm", "kgo-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	k := testKey(t)
	calls := 0
	if _, err := (Store{Dir: shm}).Create(k, []byte("secret"), fakeMaker(t, &calls)); !errors.Is(err, ErrMemoryFS) || calls != 0 {
		t.Fatalf("Create on tmpfs: %v after %d makes; want ErrMemoryFS before any", err, calls)
	}
	// A good template moved onto tmpfs (an older kata-go made it there).
	disk := Store{Dir: filepath.Join(testenv.DiskTempDir(t), "templates")}
	tm, err := disk.Create(k, []byte("secret"), fakeMaker(t, &calls))
	if err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", tm.Dir, shm).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if _, err := (Store{Dir: shm}).Lookup(k); !errors.Is(err, ErrMemoryFS) || !strings.Contains(err.Error(), "tmpfs") {
		t.Fatalf("Lookup on tmpfs: %v; want ErrMemoryFS naming tmpfs", err)
	}
	if _, err := disk.Lookup(k); err != nil {
		t.Fatalf("the same template on disk: %v", err)
	}
}
