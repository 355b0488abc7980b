package hostcgroup

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParsePath(t *testing.T) {
	for _, tc := range []struct {
		raw, dir string
		systemd  bool
	}{
		{"/kubepods/burstable/pod1/abc", "/kubepods/burstable/pod1/abc", false},
		{"/k8s.io/abc", "/k8s.io/abc", false},
		{"kubepods-burstable-pod1.slice:cri-containerd:abc", "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice/cri-containerd-abc.scope", true},
		{"system.slice:docker:abc", "/system.slice/docker-abc.scope", true},
		{":kata:abc", "/system.slice/kata-abc.scope", true},
		{"-.slice::abc", "/abc.scope", true},
		{"machine.slice:x:pod.slice", "/machine.slice/pod.slice", true},
	} {
		p, err := ParsePath(tc.raw)
		if err != nil || p.Dir != tc.dir || p.Systemd != tc.systemd || p.Raw != tc.raw {
			t.Errorf("ParsePath(%q) = %+v, %v; want dir %q systemd %v", tc.raw, p, err, tc.dir, tc.systemd)
		}
	}
	for _, raw := range []string{"", "/", "relative/path", "/a/../b", "/a//b", "a:b", "a:b:c:d", "x.slice:p:", "notaslice:p:n", "a--b.slice:p:n", "-a.slice:p:n", "x.slice:p:n/../../y"} {
		if p, err := ParsePath(raw); err == nil || !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), fmt.Sprintf("%q", raw)) {
			t.Errorf("ParsePath(%q) = %+v, %v; want an InvalidArgument error naming it", raw, p, err)
		}
	}
}

// TestRealGroup creates a group on this host's cgroup tree (v1, hybrid or
// v2), moves a process in, limits it, and removes it with the process
// still running: Remove kills what is left, as `shim delete` must.
func TestRealGroup(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs root to create cgroups")
		}
		t.Skip("needs root to create cgroups")
	}
	raw := fmt.Sprintf("/kgo-unit-%d/pod", os.Getpid())
	p, err := ParsePath(raw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = Remove(raw)
		_ = Remove(fmt.Sprintf("/kgo-unit-%d", os.Getpid()))
	})
	g, err := Create(p, 300<<20)
	if err != nil {
		t.Fatal(err)
	}
	if l, err := g.MemoryLimit(); err != nil || l != 300<<20 {
		t.Fatalf("memory limit %d, %v; want %d", l, err, 300<<20)
	}
	if err := g.SetMemoryLimit(400 << 20); err != nil {
		t.Fatal(err)
	}
	if l, _ := g.MemoryLimit(); l != 400<<20 {
		t.Fatalf("memory limit after update %d", l)
	}
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	if err := g.Add(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if pids, err := g.Pids(); err != nil || !slices.Contains(pids, cmd.Process.Pid) {
		t.Fatalf("group holds %v, %v; want pid %d", pids, err, cmd.Process.Pid)
	}
	if err := g.Delete(); err == nil {
		t.Fatal("Delete of a group with a process in it succeeded")
	}
	if err := Remove(raw); err != nil {
		t.Fatal(err)
	}
	<-done
	if _, err := Load(p); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load after Remove: %v; want not-exist", err)
	}
	if err := Remove(raw); err != nil {
		t.Fatalf("second Remove: %v", err)
	}
	if err := JoinExisting(raw, os.Getpid()); err == nil {
		t.Fatal("joined a group that is gone")
	}
}
