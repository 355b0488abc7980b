//go:build integration

package integration

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// processesMatching lists pids whose command line contains marker.
func processesMatching(marker string) []string {
	var out []string
	self := strconv.Itoa(os.Getpid())
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid := filepath.Base(d)
		if pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil || len(b) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, marker) {
			out = append(out, pid+": "+cmd)
		}
	}
	return out
}

// mountsUnder lists mount points below prefix.
func mountsUnder(prefix string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && strings.HasPrefix(fields[4], prefix) {
			out = append(out, fields[4])
		}
	}
	return out
}

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
