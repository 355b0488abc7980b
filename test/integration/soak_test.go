//go:build integration

package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
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

// TestSoak runs create/start/kill/delete cycles, one in ten with the VM
// killed and one in ten with the shim killed, and checks that nothing
// accumulates.
func TestSoak(t *testing.T) {
	d := startDaemon(t, daemons()[0])
	before := countHost()
	minFD, maxFD := 1<<30, 0
	n := soakCycles()
	for i := 0; i < n; i++ {
		id := fmt.Sprintf("soak%d", i)
		if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, id, "sleep", "1000"); err != nil {
			t.Fatalf("cycle %d: run: %v %s", i, err, e)
		}
		d.waitStatus(t, id, "RUNNING")
		shim := d.pidOf(t, "-id "+id+" ")
		if i%10 != 9 {
			fds := fdCount(shim)
			minFD, maxFD = min(minFD, fds), max(maxFD, fds)
		}
		switch i % 10 {
		case 5:
			_ = syscallKill(d.pidOf(t, "qemu-system"))
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
	}
	d.assertClean(t)
	deadline := time.Now().Add(10 * time.Second)
	for countHost() != before && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if after := countHost(); after != before {
		t.Fatalf("host counts before %+v, after %d cycles %+v", before, n, after)
	}
	if maxFD-minFD > 4 {
		t.Fatalf("shim fd count ranged %d..%d over the cycles", minFD, maxFD)
	}
	t.Logf("%d cycles; shim fds %d..%d; host %+v", n, minFD, maxFD, before)
}
