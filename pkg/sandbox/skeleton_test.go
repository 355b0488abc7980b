package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func newSkeleton(t *testing.T) (*skeleton, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "mounts")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := openSkeleton(root)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s, root
}

// Whatever sits where a target is to be made — a link to a host file, a
// link to a directory, a file, a directory — the skeleton refuses it and
// leaves the host untouched.
func TestSkeletonNeverReusesOrFollows(t *testing.T) {
	s, root := newSkeleton(t)
	canary := filepath.Join(t.TempDir(), "canary")
	if err := os.WriteFile(canary, []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.mkdir("", "c1"); err != nil {
		t.Fatal(err)
	}
	plants := map[string]func(p string) error{
		"link-to-file": func(p string) error { return os.Symlink(canary, p) },
		"link-to-dir":  func(p string) error { return os.Symlink(filepath.Dir(canary), p) },
		"dangling":     func(p string) error { return os.Symlink("/nonexistent/x", p) },
		"file":         func(p string) error { return os.WriteFile(p, nil, 0o644) },
		"dir":          func(p string) error { return os.Mkdir(p, 0o755) },
	}
	for name, plant := range plants {
		for _, dir := range []bool{true, false} {
			if err := plant(filepath.Join(root, "c1", name)); err != nil {
				t.Fatal(err)
			}
			_, err := s.create("c1", name, dir)
			if err == nil || !strings.Contains(err.Error(), "exists already") {
				t.Errorf("%s (dir=%v): %v, want an 'exists already' refusal", name, dir, err)
			}
			os.RemoveAll(filepath.Join(root, "c1", name))
		}
	}
	if b, err := os.ReadFile(canary); err != nil || string(b) != "host" {
		t.Fatalf("canary changed: %q %v", b, err)
	}
}

// A container directory swapped for a link is never walked through.
func TestSkeletonRefusesLinkedParents(t *testing.T) {
	s, root := newSkeleton(t)
	outside := t.TempDir()
	if err := os.Symlink(outside, filepath.Join(root, "c2")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.create("c2", "rootfs", true); err == nil {
		t.Fatal("created a target through a linked parent")
	}
	if err := s.mkdir("", "c2"); err == nil {
		t.Fatal("reused a linked container directory")
	}
	if _, err := s.create("../..", "x", true); err == nil {
		t.Fatal("escaped the tree with ..")
	}
	ents, _ := os.ReadDir(outside)
	if len(ents) != 0 {
		t.Fatalf("something was made outside the tree: %v", ents)
	}
}

func TestSkeletonNames(t *testing.T) {
	s, _ := newSkeleton(t)
	for _, bad := range []string{"", ".", "..", "a/b", "a\x00b"} {
		if _, err := s.create("", bad, true); err == nil {
			t.Errorf("name %q accepted", bad)
		}
	}
	tg, err := s.create("", "ok", false)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.Close()
	if fi, err := tg.Entry.Stat(); err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("file target: %v %v", fi, err)
	}
}
