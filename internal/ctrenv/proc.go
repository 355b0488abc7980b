package ctrenv

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kata-go/kata-go/internal/mountinfo"
)

// ProcessesMatching lists "pid: cmdline" of processes whose command line
// contains marker (this process excluded).
func ProcessesMatching(marker string) []string {
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

// Pids are the pids of ProcessesMatching(marker) whose line has every word.
func Pids(marker string, words ...string) []int {
	var pids []int
	for _, p := range ProcessesMatching(marker) {
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(p, w)
		}
		if ok {
			pid, _ := strconv.Atoi(strings.SplitN(p, ":", 2)[0])
			pids = append(pids, pid)
		}
	}
	return pids
}

// MountsUnder lists mount points at or below dir.
func MountsUnder(dir string) []string {
	mps, err := mountinfo.Under(dir)
	if err != nil {
		// A leak check that cannot read the table must not pass.
		return []string{err.Error()}
	}
	return mps
}

// PSS is the proportional set size of pid in bytes (smaps_rollup), 0 if gone.
func PSS(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "Pss:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// PSSExcept is pid's PSS in bytes without the mappings whose name contains
// skip (e.g. the guest RAM's memfd), from /proc/PID/smaps.
func PSSExcept(pid int, skip string) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total int64
	skipping := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			skipping = strings.Contains(line, skip)
			continue
		}
		if fields[0] == "Pss:" && !skipping && len(fields) >= 2 {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			total += kb * 1024
		}
	}
	return total
}

// LargestAnon is the PSS of pid's largest anonymous mapping (under TCG,
// QEMU's translation cache), in bytes.
func LargestAnon(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps")
	if err != nil {
		return 0
	}
	defer f.Close()
	var best int64
	anon := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		if strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			anon = len(fields) == 5 // no path: anonymous
			continue
		}
		if anon && fields[0] == "Pss:" && len(fields) >= 2 {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			best = max(best, kb*1024)
		}
	}
	return best
}
