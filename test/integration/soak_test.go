//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// soakCycles is 20 in `make test`; `make soak` sets KATA_GO_SOAK=200.
func soakCycles() int {
	if n, err := strconv.Atoi(os.Getenv("KATA_GO_SOAK")); err == nil && n > 0 {
		return n
	}
	return 20
}

// hostCounts are the host resources a leak would show up in.
type hostCounts struct{ qemu, taps, netns int }

func countHost() hostCounts {
	var c hostCounts
	for _, p := range processesMatching("qemu-system") {
		_ = p
		c.qemu++
	}
	links, _ := filepath.Glob("/sys/class/net/*")
	for _, l := range links {
		if _, err := os.Stat(filepath.Join(l, "tun_flags")); err == nil {
			c.taps++
		}
	}
	ns, _ := filepath.Glob("/run/netns/*")
	c.netns = len(ns)
	return c
}

func fdCount(pid int) int {
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(fds)
}

// childOf is the pid of a child of parent whose command line contains
// word, 0 if none.
func childOf(parent int, word string) int {
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range dirs {
		stat, err := os.ReadFile(filepath.Join(dir, "stat"))
		cmd, cerr := os.ReadFile(filepath.Join(dir, "cmdline"))
		if err != nil || cerr != nil || !strings.Contains(string(cmd), word) {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(parent) {
			pid, _ := strconv.Atoi(filepath.Base(dir))
			return pid
		}
	}
	return 0
}

// TestSoak runs create/start/kill/delete cycles, one in ten with the VM
// killed and one in ten with the shim killed, and checks that nothing
// accumulates. Beside them one container lives through every cycle and
// gets an exec per cycle: its shim's fd count is measured after each, so
// a shim that leaks per request shows (each cycle's own shim is fresh and
// could never show a leak).
func TestSoak(t *testing.T) {
	d := startDaemon(t, daemons()[0])
	before := countHost()
	if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, "anchor", "sleep", "100000"); err != nil {
		t.Fatalf("run anchor: %v %s", err, e)
	}
	anchorGone := false
	defer func() {
		if !anchorGone {
			d.remove("anchor")
		}
	}()
	d.waitStatus(t, "anchor", "RUNNING")
	anchor := d.pidOf(t, "-id anchor ")
	var fds []int // the anchor shim's fd count after each cycle
	n := soakCycles()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("soak%d", i)
		if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, id, "sleep", "1000"); err != nil {
			t.Fatalf("cycle %d: run: %v %s", i, err, e)
		}
		d.waitStatus(t, id, "RUNNING")
		shim := d.pidOf(t, "-id "+id+" ")
		switch i % 10 {
		case 5:
			qemu := childOf(shim, "qemu-system")
			if qemu == 0 {
				t.Fatalf("cycle %d: no QEMU under shim %d", i, shim)
			}
			_ = syscallKill(qemu)
		case 9:
			_ = syscallKill(shim)
		default:
			if _, e, err := d.ctr("task", "kill", "-s", "KILL", id); err != nil {
				t.Fatalf("cycle %d: kill: %v %s", i, err, e)
			}
		}
		deadline := time.Now().Add(30 * time.Second)
		for d.taskStatus(id) == "RUNNING" {
			if time.Now().After(deadline) {
				t.Fatalf("cycle %d: task still running", i)
			}
			time.Sleep(20 * time.Millisecond)
		}
		for d.taskStatus(id) != "" {
			_, _, _ = d.ctr("task", "delete", id)
			if time.Now().After(deadline) {
				t.Fatalf("cycle %d: task not deleted: %s", i, d.taskStatus(id))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if _, e, err := d.ctr("container", "rm", id); err != nil {
			t.Fatalf("cycle %d: container rm: %v %s", i, err, e)
		}
		want := fmt.Sprintf("cycle %d", i)
		out, e, err := d.ctr("task", "exec", "--exec-id", fmt.Sprintf("x%d", i), "anchor", "echo", want)
		if err != nil || strings.TrimSpace(out) != want {
			t.Fatalf("cycle %d: exec in anchor: %q %v %s", i, out, err, e)
		}
		fds = append(fds, fdCount(anchor))
	}
	if st := d.taskStatus("anchor"); st != "RUNNING" {
		t.Fatalf("anchor is %q after the cycles", st)
	}
	d.remove("anchor")
	anchorGone = true
	d.assertClean(t)
	deadline := time.Now().Add(10 * time.Second)
	for countHost() != before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if after := countHost(); after != before {
		t.Fatalf("host counts before %+v, after %d cycles %+v", before, n, after)
	}
	// The first cycles may open what the shim keeps for good (a log, a
	// cached connection); after them the count must stay put.
	settled := fds[min(2, len(fds)-1)]
	if last := fds[len(fds)-1]; last > settled+2 || slices.Max(fds) > settled+4 {
		t.Fatalf("the long-lived shim's fd count grew over the cycles: %v", fds)
	}
	t.Logf("%d cycles; long-lived shim fds %v; host %+v", n, fds, before)
}
