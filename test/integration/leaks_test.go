//go:build integration

package integration

import (
	"os"
	"testing"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

func processesMatching(marker string) []string { return ctrenv.ProcessesMatching(marker) }
func mountsUnder(prefix string) []string       { return ctrenv.MountsUnder(prefix) }

func writeFileErr(path, content string) error { return os.WriteFile(path, []byte(content), 0o644) }

// assertNoLeaks fails when a process or mount naming marker remains.
func assertNoLeaks(t testing.TB, marker string) {
	t.Helper()
	if p := processesMatching(marker); len(p) > 0 {
		t.Errorf("processes left behind: %v", p)
	}
	if m := mountsUnder(marker); len(m) > 0 {
		t.Errorf("mounts left behind: %v", m)
	}
}
