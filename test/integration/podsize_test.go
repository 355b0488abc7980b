//go:build integration

package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

// Sizes of the pod TestPodSize asks for, and the VM kata-go's default
// configuration (1 vCPU, 512 MiB base) makes of it.
const (
	podMemBytes  = 1 << 30
	podCPUQuota  = 200000
	podCPUPeriod = 100000
	baseMiB      = 512
	sizedVMMiB   = baseMiB + podMemBytes>>20
)

// TestPodSize: a pod's VM is sized from its resources where containerd
// passes them (both daemons do: Debian's 1.6.20 too, not only 1.7 and
// later), else the fallback, and the log says so; a container that
// cannot fit fails at create naming both sizes, the VM's host processes
// live in the pod's cgroup with a memory limit and the pod's OOM score,
// the cgroup goes with the pod (also after a shim crash), and the shim
// honours containerd's shim_cgroup as runc's does.
func TestPodSize(t *testing.T) {
	for _, spec := range daemons() {
		t.Run(spec.Name, func(t *testing.T) {
			d := startCRI(t, spec)
			parent := fmt.Sprintf("/kgo-podsize-%d", time.Now().UnixNano()%1e9)
			t.Cleanup(func() { removeCgroupTree(t, parent) })
			t.Run("Sized", func(t *testing.T) { testPodSized(t, d, parent) })
			t.Run("Fallback", func(t *testing.T) { testPodFallback(t, d) })
			t.Run("ShimCrash", func(t *testing.T) { testPodCgroupAfterShimCrash(t, d, parent) })
			t.Run("ShimCgroup", func(t *testing.T) { testShimCgroup(t, d, parent) })
		})
	}
}

func testPodSized(t *testing.T, d *daemon, parent string) {
	podID, pod := startSizedPod(t, d, "sized", parent)
	wantMiB := sizedVMMiB
	line := vmSizeLine(t, d, podID)
	if !strings.Contains(line, `rule="pod resources"`) || !strings.Contains(line, fmt.Sprintf("memory_mib=%d", wantMiB)) {
		t.Fatalf("VM size log line %q: want rule=\"pod resources\" and memory_mib=%d", line, wantMiB)
	}

	// The guest has the room the pod asked for.
	probe := createSized(t, d, podID, pod, "probe", 0, nil, "sleep", "1000")
	if memKB, cpus := guestSize(t, d, probe); memKB < podMemBytes>>10 || cpus < 2 {
		t.Fatalf("guest has %d kB and %d CPUs; the pod asked for 1 GiB and 2 CPUs", memKB, cpus)
	}

	// A 900 MiB container fills 700 MiB of a memory-backed emptyDir (in
	// the 512 MiB VM the pod got before, it was OOM-killed).
	scratch := memoryEmptyDir(t)
	mounts := []map[string]any{{"container_path": "/data", "host_path": scratch}}
	id := createSized(t, d, podID, pod, "fill", 900<<20, mounts, "sh", "-c", fillCmd)
	if code := waitExit(t, d, id, 3*time.Minute); code != 0 {
		t.Fatalf("filling 700 MiB under a 900 MiB limit exited %d; log:\n%s", code, crictl(t, d, "logs", id))
	}

	// A container that fits no VM of this pod fails at create, naming both.
	_, err := createSizedErr(t, d, podID, pod, "huge", 4<<30, nil, "true")
	if err == nil || !strings.Contains(err.Error(), "4096 MiB") || !strings.Contains(err.Error(), fmt.Sprintf("%d MiB", wantMiB)) {
		t.Fatalf("4 GiB container in a %d MiB VM: %v", wantMiB, err)
	}

	// The pod's host cgroup holds the VM and limits it.
	cg := parent + "/" + podID
	procs := cgroupProcs(t, cg)
	vm := append(ctrenv.Pids(d.stateRoot, "qemu-system"), ctrenv.Pids(d.stateRoot, "virtiofsd")...)
	if len(vm) < 2 {
		t.Fatalf("VM processes: %v", vm)
	}
	for _, p := range vm {
		if !slices.Contains(procs, p) {
			t.Fatalf("VM process %d is not in the pod cgroup %s (holds %v)", p, cg, procs)
		}
	}
	if limit := cgroupMemLimit(t, cg); limit < int64(wantMiB)<<20 {
		t.Fatalf("pod cgroup memory limit %d < VM size %d MiB", limit, wantMiB)
	}

	// The VM's processes have the pod's OOM score, as runc's pause has.
	podAdj := sandboxOOMScoreAdj(t, d, podID)
	for _, p := range vm {
		if got := oomScoreAdj(t, p); got != podAdj {
			t.Fatalf("VM process %d oom_score_adj %d; the pod's is %d", p, got, podAdj)
		}
	}
	runcPod := crictl(t, d, "runp", writeJSON(t, filepath.Join(t.TempDir(), "runc.json"), map[string]any{
		"metadata": map[string]any{"name": "runc-oom", "namespace": "default", "uid": "runc-oom-uid", "attempt": 1},
		"linux":    map[string]any{"cgroup_parent": parent},
	}))
	t.Cleanup(func() {
		_, _ = crictlErr(d, "stopp", runcPod)
		_, _ = crictlErr(d, "rmp", "-f", runcPod)
	})
	if runcAdj := oomScoreAdj(t, inspectPid(t, d, runcPod)); runcAdj != podAdj {
		t.Fatalf("runc's pause has oom_score_adj %d, kata-go's VM %d", runcAdj, podAdj)
	}
	crictl(t, d, "stopp", runcPod)
	crictl(t, d, "rmp", runcPod)
	t.Logf("VM size line: %s; pod oom_score_adj %d (the shim's: %d)", line, podAdj, oomScoreAdj(t, ctrenv.Pids(d.sock, "containerd-shim-kata-v2")[0]))

	crictl(t, d, "stopp", podID)
	crictl(t, d, "rmp", podID)
	if err := d.WaitClean(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	assertCgroupGone(t, cg)
}

const fillCmd = "dd if=/dev/zero of=/data/fill bs=1048576 count=700 && echo filled"

// testPodFallback: a pod config without linux.resources (no annotations)
// gets the configured base, the log says which rule and why, and a
// container larger than that VM fails at create naming both sizes.
func testPodFallback(t *testing.T, d *daemon) {
	podID, pod := startPod(t, d, "fallback", false)
	line := vmSizeLine(t, d, podID)
	if !strings.Contains(line, `rule="first container's limits"`) || !strings.Contains(line, fmt.Sprintf("memory_mib=%d", baseMiB)) ||
		!strings.Contains(line, "no io.kubernetes.cri.sandbox-memory annotation") {
		t.Fatalf("fallback VM size log line %q", line)
	}
	probe := createSized(t, d, podID, pod, "probe", 0, nil, "sleep", "1000")
	if memKB, cpus := guestSize(t, d, probe); memKB > baseMiB<<10 || cpus != 1 {
		t.Fatalf("fallback guest has %d kB and %d CPUs; want the %d MiB, 1 vCPU base", memKB, cpus, baseMiB)
	}
	mounts := []map[string]any{{"container_path": "/data", "host_path": memoryEmptyDir(t)}}
	_, err := createSizedErr(t, d, podID, pod, "fill", 900<<20, mounts, "sh", "-c", fillCmd)
	if err == nil || !strings.Contains(err.Error(), "900 MiB") || !strings.Contains(err.Error(), fmt.Sprintf("%d MiB", baseMiB)) {
		t.Fatalf("900 MiB container in a %d MiB VM: %v", baseMiB, err)
	}
	crictl(t, d, "stopp", podID)
	crictl(t, d, "rmp", podID)
	if err := d.WaitClean(15 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// guestSize is the guest's MemTotal in kB and its CPU count, seen from a
// running container.
func guestSize(t *testing.T, d *daemon, id string) (memKB, cpus int) {
	t.Helper()
	out := crictl(t, d, "exec", "-s", id, "sh", "-c", "grep MemTotal /proc/meminfo; grep -c ^processor /proc/cpuinfo")
	f := strings.Fields(out)
	if len(f) != 4 {
		t.Fatalf("guest meminfo/cpuinfo: %q", out)
	}
	memKB, _ = strconv.Atoi(f[1])
	cpus, _ = strconv.Atoi(f[3])
	return memKB, cpus
}

// testPodCgroupAfterShimCrash: the shim dies; containerd's cleanup
// (`shim delete`) removes the pod's cgroup with everything else.
func testPodCgroupAfterShimCrash(t *testing.T, d *daemon, parent string) {
	podID, _ := startSizedPod(t, d, "crash", parent)
	cg := parent + "/" + podID
	if len(cgroupProcs(t, cg)) == 0 {
		t.Fatalf("pod cgroup %s is empty", cg)
	}
	shims := ctrenv.Pids(d.sock, "containerd-shim-kata-v2")
	if len(shims) != 1 {
		t.Fatalf("shims: %v", shims)
	}
	if err := syscall.Kill(shims[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_, _ = crictlErr(d, "stopp", podID)
	// containerd 2.4's first removal after a shim died may report the
	// dead connection; its retry runs the cleanup.
	for i := 0; ; i++ {
		out, err := crictlErr(d, "rmp", "-f", podID)
		if err == nil {
			break
		}
		if i == 2 {
			t.Fatalf("crictl rmp -f %s: %v\n%s", podID, err, out)
		}
	}
	if err := d.WaitClean(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	assertCgroupGone(t, cg)
}

// testShimCgroup: a task made through containerd's Go client with
// WithShimCgroup (containerd 2's client sends runc's options type for any
// runtime) has its shim in that cgroup, for kata-go as for runc, and
// kata-go's VM still goes to the task's own cgroup. The client lives in
// its own module (testdata/shimcgroup): containerd 1.7's client package,
// kata-go's dependency, does not build against runtime-spec 1.3.
func testShimCgroup(t *testing.T, d *daemon, parent string) {
	bin := filepath.Join(t.TempDir(), "shimcgroup")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join(testenv.RepoRoot(), "test", "integration", "testdata", "shimcgroup")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the Go client: %v\n%s", err, out)
	}
	for _, rt := range []struct{ runtime, shim string }{
		{kataRuntime, "containerd-shim-kata-v2"},
		{"io.containerd.runc.v2", "containerd-shim-runc-v2"},
	} {
		id := "shimcg-" + strings.Split(rt.runtime, ".")[2]
		shimCg := parent + "/shims-" + id
		makeCgroup(t, shimCg)
		taskCg := parent + "/" + id
		cmd := exec.Command(bin, "-address", d.sock, "-runtime", rt.runtime, "-id", id, "-image", ctrenv.Image, "-shim-cgroup", shimCg, "-cgroup", taskCg)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		if strings.TrimSpace(line) != "ready" {
			_ = stdin.Close()
			_ = cmd.Wait()
			t.Fatalf("%s: the Go client did not start its task: %q %s", rt.runtime, line, stderr.String())
		}
		shims := ctrenv.Pids(d.sock, rt.shim, "-id "+id+" ")
		procs := cgroupProcs(t, shimCg)
		if len(shims) != 1 || !slices.Contains(procs, shims[0]) {
			t.Errorf("%s: shim %v is not in its shim cgroup %s (holds %v)", rt.runtime, shims, shimCg, procs)
		}
		if rt.runtime == kataRuntime {
			taskProcs := cgroupProcs(t, taskCg)
			for _, p := range ctrenv.Pids(d.stateRoot, "qemu-system") {
				if !slices.Contains(taskProcs, p) {
					t.Errorf("QEMU %d is not in the task's cgroup %s (holds %v)", p, taskCg, taskProcs)
				}
			}
			if len(shims) == 1 && slices.Contains(taskProcs, shims[0]) {
				t.Errorf("the shim joined the task's cgroup though containerd placed it in %s", shimCg)
			}
		}
		_ = stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("%s: the Go client's cleanup: %v %s", rt.runtime, err, stderr.String())
		}
		assertCgroupGone(t, taskCg)
	}
	if err := d.WaitClean(15 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// startSizedPod runs a kata pod limited to 1 GiB and 2 CPUs whose cgroups
// live under parent.
func startSizedPod(t *testing.T, d *daemon, name, parent string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	pod := writeJSON(t, filepath.Join(dir, "pod.json"), map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 1},
		"hostname":      name,
		"log_directory": filepath.Join(dir, "logs"),
		"linux": map[string]any{
			"cgroup_parent": parent,
			"resources":     map[string]any{"memory_limit_in_bytes": podMemBytes, "cpu_quota": podCPUQuota, "cpu_period": podCPUPeriod},
		},
	})
	id := crictl(t, d, "runp", "--runtime", "kata", pod)
	t.Cleanup(func() {
		_, _ = crictlErr(d, "stopp", id)
		_, _ = crictlErr(d, "rmp", "-f", id)
	})
	return id, pod
}

func createSized(t *testing.T, d *daemon, podID, pod, name string, memBytes int64, mounts []map[string]any, cmd ...string) string {
	t.Helper()
	id, err := createSizedErr(t, d, podID, pod, name, memBytes, mounts, cmd...)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// createSizedErr creates and starts a container with a memory limit
// (0: none), returning crictl's error.
func createSizedErr(t *testing.T, d *daemon, podID, pod, name string, memBytes int64, mounts []map[string]any, cmd ...string) (string, error) {
	t.Helper()
	linux := map[string]any{}
	if memBytes > 0 {
		linux["resources"] = map[string]any{"memory_limit_in_bytes": memBytes}
	}
	cfg := writeJSON(t, filepath.Join(t.TempDir(), "ctr.json"), map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": ctrenv.Image},
		"command":  cmd,
		"log_path": name + ".log",
		"mounts":   mounts,
		"linux":    linux,
	})
	out, err := crictlErr(d, "create", podID, cfg, pod)
	if err != nil {
		return "", fmt.Errorf("create %s: %w: %s", name, err, out)
	}
	id := strings.TrimSpace(out)
	if out, err := crictlErr(d, "start", id); err != nil {
		return id, fmt.Errorf("start %s: %w: %s", name, err, out)
	}
	return id, nil
}

// vmSizeLine is the shim's "VM size" log line for a pod.
func vmSizeLine(t *testing.T, d *daemon, podID string) string {
	t.Helper()
	for _, l := range strings.Split(d.Log.String(), "\n") {
		if strings.Contains(l, `msg="VM size"`) && strings.Contains(l, podID) {
			return l
		}
	}
	t.Fatalf("no VM size log line for pod %s", podID)
	return ""
}

// memoryEmptyDir is what the kubelet makes for an emptyDir of medium
// Memory: an empty tmpfs under a kubernetes.io~empty-dir path.
func memoryEmptyDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "pods", "uid", "volumes", "kubernetes.io~empty-dir", "scratch")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1g"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// waitExit waits for a CRI container to exit and returns its exit code.
func waitExit(t *testing.T, d *daemon, id string, limit time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		var insp struct {
			Status struct {
				State    string
				ExitCode int
			}
		}
		if err := json.Unmarshal([]byte(crictl(t, d, "inspect", "-o", "json", id)), &insp); err != nil {
			t.Fatal(err)
		}
		if insp.Status.State == "CONTAINER_EXITED" {
			return insp.Status.ExitCode
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %s after %s", id, insp.Status.State, limit)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// inspectPid is the host pid CRI reports for a pod's sandbox.
func inspectPid(t *testing.T, d *daemon, podID string) int {
	t.Helper()
	var insp struct{ Info struct{ Pid int } }
	if err := json.Unmarshal([]byte(crictl(t, d, "inspectp", "-o", "json", podID)), &insp); err != nil || insp.Info.Pid <= 0 {
		t.Fatalf("pid of pod %s: %v %+v", podID, err, insp)
	}
	return insp.Info.Pid
}

// sandboxOOMScoreAdj is process.oomScoreAdj of the pod's sandbox spec, as
// containerd wrote it into the bundle.
func sandboxOOMScoreAdj(t *testing.T, d *daemon, podID string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(d.Dir, "state", "*", "k8s.io", podID, "config.json"))
	if len(files) != 1 {
		t.Fatalf("sandbox bundle of %s: %v", podID, files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	var s struct{ Process struct{ OOMScoreAdj *int } }
	if err := json.Unmarshal(b, &s); err != nil || s.Process.OOMScoreAdj == nil {
		t.Fatalf("sandbox spec %s: %v, no process.oomScoreAdj", files[0], err)
	}
	return *s.Process.OOMScoreAdj
}

func oomScoreAdj(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/oom_score_adj", pid))
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return n
}

// cgroupV2 reports a unified (v2 only) host.
func cgroupV2() bool { return testenv.Exists("/sys/fs/cgroup/cgroup.controllers") }

// makeCgroup creates a cgroupfs path in every hierarchy, as an operator
// does for shim_cgroup; v1 cpuset directories get their parent's CPUs and
// memory nodes (an empty cpuset admits no process).
func makeCgroup(t *testing.T, cg string) {
	t.Helper()
	for _, dir := range cgroupDirs(cg) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if cgroupV2() {
		return
	}
	root := "/sys/fs/cgroup/cpuset"
	dir := root
	for _, part := range strings.Split(strings.Trim(cg, "/"), "/") {
		parentDir := dir
		dir = filepath.Join(dir, part)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if b, _ := os.ReadFile(filepath.Join(dir, f)); len(strings.TrimSpace(string(b))) > 0 {
				continue
			}
			b, err := os.ReadFile(filepath.Join(parentDir, f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// cgroupDirs are a cgroupfs path's directories in every hierarchy.
func cgroupDirs(cg string) []string {
	if cgroupV2() {
		return []string{filepath.Join("/sys/fs/cgroup", cg)}
	}
	var dirs []string
	roots, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, r := range roots {
		if st, err := os.Lstat(r); err == nil && st.IsDir() {
			dirs = append(dirs, filepath.Join(r, cg))
		}
	}
	return dirs
}

// cgroupFile is a file of a cgroupfs path in its memory hierarchy.
func cgroupFile(cg, file string) string {
	if cgroupV2() {
		return filepath.Join("/sys/fs/cgroup", cg, file)
	}
	return filepath.Join("/sys/fs/cgroup/memory", cg, file)
}

func cgroupProcs(t *testing.T, cg string) []int {
	t.Helper()
	b, err := os.ReadFile(cgroupFile(cg, "cgroup.procs"))
	if err != nil {
		t.Fatalf("cgroup %s: %v", cg, err)
	}
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

func cgroupMemLimit(t *testing.T, cg string) int64 {
	t.Helper()
	file := "memory.limit_in_bytes"
	if cgroupV2() {
		file = "memory.max"
	}
	b, err := os.ReadFile(cgroupFile(cg, file))
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		t.Fatalf("cgroup %s %s: %q", cg, file, b)
	}
	return n
}

// assertCgroupGone fails if the cgroup is left in any hierarchy.
func assertCgroupGone(t *testing.T, cg string) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", cg))
	if cgroupV2() && testenv.Exists(filepath.Join("/sys/fs/cgroup", cg)) {
		left = append(left, filepath.Join("/sys/fs/cgroup", cg))
	}
	if len(left) > 0 {
		t.Fatalf("pod cgroup left behind: %v", left)
	}
}

// removeCgroupTree removes the test's parent cgroup (and what runc's pods
// or the shim cgroups left below it), deepest first.
func removeCgroupTree(t *testing.T, parent string) {
	roots := []string{"/sys/fs/cgroup"}
	if !cgroupV2() {
		roots, _ = filepath.Glob("/sys/fs/cgroup/*")
	}
	for _, r := range roots {
		var dirs []string
		_ = filepath.WalkDir(filepath.Join(r, parent), func(p string, e os.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := os.Remove(dirs[i]); err != nil {
				t.Errorf("remove test cgroup: %v", err)
			}
		}
	}
}
