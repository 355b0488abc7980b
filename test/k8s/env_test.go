//go:build k8se2e

// Package k8s runs a real kubelet (standalone: static pods, no API
// server) against a private containerd whose CRI default runtime is
// kata-go, and checks what the kubelet sees of a VM pod: its size, its
// cgroup, its stats and its teardown. `make k8s-e2e` builds what it needs
// (hack/build-kubelet.sh) and runs it; it needs root. Outside CI a missing
// part skips the test with what is missing and why; in CI (CI=true) it
// fails.
//
// Nothing of the host's Kubernetes state is used or changed: the kubelet
// has its own root, certificate, log and plugin directories and cgroup
// root, serves on 127.0.0.1 only, makes no iptables chains, and runs in a
// private mount namespace where the sysctls it insists on are files with
// the values it wants (protectKernelDefaults: it then fails rather than
// writes a sysctl) and /var/log and /var/lib are tmpfs mounts (it always
// makes /var/log/containers and /var/lib/kubelet/device-plugins).
package k8s

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"
)

// crictl runs crictl against the CRI socket, bounded to two minutes.
func crictl(t *testing.T, sock string, args ...string) string {
	t.Helper()
	out, err := crictlErr(sock, args...)
	if err != nil {
		t.Fatalf("crictl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

func crictlErr(sock string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.CrictlPath(), append([]string{"-r", "unix://" + sock, "-t", "60s"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

// newUID is a random RFC 4122 version 4 UUID, the form the API server
// gives pods.
func newUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// cgroupV2 reports a unified (v2 only) host.
func cgroupV2() bool { return testenv.Exists("/sys/fs/cgroup/cgroup.controllers") }

// memoryHierarchy is the root of the hierarchy with the memory controller.
func memoryHierarchy() string {
	if cgroupV2() {
		return "/sys/fs/cgroup"
	}
	return "/sys/fs/cgroup/memory"
}

// hierarchies are the mounted cgroup hierarchies' roots.
func hierarchies() []string {
	if cgroupV2() {
		return []string{"/sys/fs/cgroup"}
	}
	var roots []string
	all, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, r := range all {
		if st, err := os.Lstat(r); err == nil && st.IsDir() {
			roots = append(roots, r)
		}
	}
	return roots
}

// makeCgroupRoot creates the kubelet's cgroup root in every hierarchy, as
// an operator does for --cgroup-root; a v1 cpuset directory gets its
// parent's CPUs and memory nodes (an empty cpuset admits no process).
func makeCgroupRoot(t *testing.T, cg string) {
	t.Helper()
	for _, r := range hierarchies() {
		if err := os.MkdirAll(filepath.Join(r, cg), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if cgroupV2() {
		return
	}
	dir := filepath.Join("/sys/fs/cgroup/cpuset", cg)
	for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(dir), f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// cgroupTree lists the directories at and below cg in every hierarchy,
// deepest first.
func cgroupTree(cg string) []string {
	var dirs []string
	for _, r := range hierarchies() {
		var here []string
		_ = filepath.WalkDir(filepath.Join(r, cg), func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				here = append(here, p)
			}
			return nil
		})
		for i := len(here) - 1; i >= 0; i-- {
			dirs = append(dirs, here[i])
		}
	}
	return dirs
}

// treeProcs are the pids in cg and every cgroup below it (memory
// hierarchy), with the cgroup each is in.
func treeProcs(dir string) map[int]string {
	procs := map[int]string{}
	_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(filepath.Join(p, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				procs[pid] = strings.TrimPrefix(p, memoryHierarchy())
			}
		}
		return nil
	})
	return procs
}

// removeCgroupRoot removes the test's cgroup root in every hierarchy. Only
// this test's pods live there: any process still in it is one of their
// VM's and is killed first (by pid). Returns what could not be removed.
func removeCgroupRoot(cg string) []string {
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, r := range hierarchies() {
			for pid := range treeProcs(filepath.Join(r, cg)) {
				if p, err := os.FindProcess(pid); err == nil {
					_ = p.Kill()
				}
			}
		}
		var left []string
		for _, d := range cgroupTree(cg) {
			if err := os.Remove(d); err != nil && !os.IsNotExist(err) {
				left = append(left, d+": "+err.Error())
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// readInt reads a file holding one integer.
func readInt(t *testing.T, path string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("%s: %q", path, b)
	}
	return n
}

// hostLinks are the host network namespace's interface names.
func hostLinks(t *testing.T) []string {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show").Output()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			names = append(names, strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0])
		}
	}
	return names
}

// netnsLinks are the interface names in a network namespace file.
func netnsLinks(t *testing.T, path string) string {
	t.Helper()
	out, err := exec.Command("nsenter", "--net="+path, "ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("links in %s: %v %s", path, err, out)
	}
	return string(out)
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	l := bytes.Split(b, []byte("\n"))
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return string(bytes.Join(l, []byte("\n")))
}
