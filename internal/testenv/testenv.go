// Package testenv is what the test tiers that need the real machine share
// (test/integration, test/client, test/k8s): where the checkout and its
// guest artefacts are, where the test tools were built, and how a missing
// prerequisite is reported. On a developer's machine a missing part skips
// the test and says what to install; under CI=true it fails, because there
// every tier must run and a silent skip would pass a run that tested
// nothing.
package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// RepoRoot is the checkout this package was compiled from (two levels up
// from internal/testenv), wherever the test binary runs.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// GuestFile is a file `make guest` writes: the kernel or the initrd.
func GuestFile(name string) string { return filepath.Join(RepoRoot(), "guest", "out", name) }

// Need stops the test when a prerequisite is absent, saying which and why.
func Need(t testing.TB, what, why string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	msg := "missing " + what + ": " + why
	if os.Getenv("CI") != "" {
		t.Fatal(msg + " (CI=true: this tier must run)")
	}
	t.Skip(msg)
}

// Exists reports whether p can be stat'ed.
func Exists(p string) bool { _, err := os.Stat(p); return err == nil }

// OnPath reports whether bin is found on $PATH.
func OnPath(bin string) bool { _, err := exec.LookPath(bin); return err == nil }

// CrictlPath is the crictl `make deps` builds, or $KATA_GO_CRICTL.
func CrictlPath() string {
	if p := os.Getenv("KATA_GO_CRICTL"); p != "" {
		return p
	}
	return "/var/cache/kata-go/cri-tools/crictl"
}

// DiskTempDir is a temporary directory on a disk filesystem (under
// /var/tmp, which the FHS keeps on disk), removed when t ends. VM
// template stores must be on one (pkg/vmtemplate refuses tmpfs), and
// t.TempDir may be a tmpfs /tmp.
func DiskTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "kgo-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove %s: %v", dir, err)
		}
	})
	return dir
}
