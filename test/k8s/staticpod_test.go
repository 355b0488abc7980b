//go:build k8se2e

package k8s

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

// The pod TestKubeletStaticPod runs, and the VM kata-go's default
// configuration (1 vCPU, 512 MiB base) makes of it.
const (
	podMemBytes = 1 << 30
	podCPUs     = 2
	baseMiB     = 512
	vmMiB       = baseMiB + podMemBytes>>20
	// podOverhead is the memory of docs/kubernetes.md's RuntimeClass
	// overhead. A static pod cannot name a RuntimeClass, so the manifest
	// carries what RuntimeClass admission would have put in it; its CPU
	// overhead is left out, as a Guaranteed 2-CPU pod plus 250m does not
	// fit this 2-CPU node.
	podOverhead = "640Mi"
	// holdMiB is what a process of the container holds in the guest
	// before the container turns ready: dd's buffer, filled from
	// /dev/zero, while dd blocks forever writing it to a pipe nobody
	// reads. (Memory a process frees the guest gives back: the VM has
	// virtio-balloon free page reporting.)
	holdMiB = 300
	// vmFloorMiB is the least the VM costs beyond its containers' working
	// set: QEMU (with TCG's cache) and virtiofsd took 106 MiB of RSS here
	// (2026-12-03), and the guest kernel's own pages come on top.
	vmFloorMiB = 64
)

// holdCmd (with holdMiB, and 90 percent of it in kB): dd fills a buffer of that
// size (fullblock: a short read is retried) and blocks writing it to
// sleep, which never reads; the container turns ready (its exec probe
// finds /tmp/touched) once dd's RSS has it (busybox's dd shows 307012 kB
// for a 307200 kB buffer). It prints dd's RSS as it goes.
// The kubelet expands $(VAR) in a command and turns $$ into $: the shell's
// $$ is written $$$$.
const holdCmd = `sh -c 'echo $$$$ >/tmp/dd.pid; exec dd if=/dev/zero bs=%dM count=1 iflag=fullblock 2>/tmp/dd.err' | sleep 100000 &
while :; do
  rss=$(awk '/^VmRSS/{print $2}' /proc/$(cat /tmp/dd.pid 2>/dev/null)/status 2>/dev/null)
  echo "dd rss ${rss:-none} kB $(cat /tmp/dd.err 2>/dev/null)"
  [ "${rss:-0}" -ge %d ] && break
  sleep 0.5
done
touch /tmp/touched
exec sleep 100000`

// TestKubeletStaticPod: a real kubelet runs a static pod limited to 1 GiB
// and 2 CPUs on kata-go (containerd's default runtime) and
//
//	(a) the guest has at least 1 GiB and 2 CPUs;
//	(b) the kubelet's pod cgroup holds the VM's QEMU and virtiofsd and
//	    its memory limit is at least the VM's size;
//	(c) the kubelet's /stats/summary counts the VM in the pod's memory;
//	(d) removing the manifest leaves no VM, pod cgroup, mount or tap.
func TestKubeletStaticPod(t *testing.T) {
	testenv.Need(t, "root", "the kubelet, the VM and containerd need it", os.Geteuid() == 0)
	testenv.Need(t, "kubelet "+KubeletVersion+" at "+kubeletPath(), "hack/build-kubelet.sh builds it", testenv.Exists(kubeletPath()))
	testenv.Need(t, "crictl", "hack/install-deps.sh --test-tools builds it into /var/cache/kata-go/cri-tools", testenv.Exists(testenv.CrictlPath()))
	testenv.Need(t, "/usr/lib/cni/bridge", "apt-get install containernetworking-plugins", testenv.Exists("/usr/lib/cni/bridge"))
	testenv.Need(t, "qemu-system-x86_64", "apt-get install qemu-system-x86", testenv.OnPath("qemu-system-x86_64"))
	testenv.Need(t, "unshare and nsenter", "apt-get install util-linux", testenv.OnPath("unshare") && testenv.OnPath("nsenter"))
	testenv.Need(t, "guest kernel and initrd in guest/out", "run make guest", testenv.Exists(testenv.GuestFile("vmlinux")) && testenv.Exists(testenv.GuestFile("initrd.img")))
	shimDir := filepath.Join(testenv.RepoRoot(), "bin")
	testenv.Need(t, "bin/containerd-shim-kata-v2", "run make build", testenv.Exists(filepath.Join(shimDir, "containerd-shim-kata-v2")))
	var spec ctrenv.Spec
	for _, s := range ctrenv.Specs() {
		if s.Name == "containerd-2.4" {
			spec = s
		}
	}
	testenv.Need(t, spec.Containerd, spec.Why, spec.Containerd != "" && testenv.Exists(spec.Containerd))

	// What the host has before: none of it may change.
	sysctlsBefore := hostSysctls(t)
	hostPaths := []string{"/var/lib/kubelet", "/var/log/containers", "/var/log/pods", "/usr/libexec/kubernetes", "/sys/fs/cgroup/memory/kubepods", "/sys/fs/cgroup/kubepods"}
	existed := map[string]bool{}
	for _, p := range hostPaths {
		existed[p] = testenv.Exists(p)
	}
	linksBefore := hostLinks(t)
	t.Cleanup(func() {
		if after := hostSysctls(t); fmt.Sprint(after) != fmt.Sprint(sysctlsBefore) {
			t.Errorf("host sysctls changed: %v, were %v", after, sysctlsBefore)
		}
		for _, p := range hostPaths {
			if testenv.Exists(p) != existed[p] {
				t.Errorf("host path %s: existed %v before, %v after", p, existed[p], testenv.Exists(p))
			}
		}
	})

	cgroupRoot := fmt.Sprintf("/kgo-k8s-%d", time.Now().UnixNano()%1e9)
	makeCgroupRoot(t, cgroupRoot)
	// Runs last: after containerd and the kubelet are gone.
	t.Cleanup(func() {
		if left := removeCgroupRoot(cgroupRoot); len(left) > 0 {
			t.Errorf("cgroups left: %v", left)
		}
	})

	d, err := ctrenv.Start(spec, ctrenv.Options{ShimDir: shimDir, Kernel: testenv.GuestFile("vmlinux"), Initrd: testenv.GuestFile("initrd.img"), CRI: true, DefaultRuntime: "kata"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("containerd log tail:\n%s", ctrenv.Tail(d.Log.String(), 60))
		}
		// The safety net: pods the kubelet did not remove.
		for _, p := range strings.Fields(func() string { out, _ := crictlErr(d.Sock, "pods", "-q"); return out }()) {
			t.Errorf("pod %s still there at the end; removing it", p)
			_, _ = crictlErr(d.Sock, "stopp", p)
			_, _ = crictlErr(d.Sock, "rmp", "-f", p)
		}
		d.Stop()
	})

	k := startKubelet(t, d.Sock, cgroupRoot)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("kubelet log tail:\n%s", tail(k.Log, 60))
		}
		// Pods go through the kubelet: remove every manifest and let it
		// tear them down before it stops.
		manifests, _ := filepath.Glob(filepath.Join(k.Manifests, "*"))
		for _, m := range manifests {
			_ = os.Remove(m)
		}
		if len(manifests) > 0 {
			deadline := time.Now().Add(2 * time.Minute)
			for time.Now().Before(deadline) {
				if out, _ := crictlErr(d.Sock, "pods", "-q"); strings.TrimSpace(out) == "" {
					break
				}
				time.Sleep(time.Second)
			}
		}
		k.Stop()
		if !t.Failed() {
			os.RemoveAll(k.Dir)
		} else {
			t.Logf("kubelet directory kept: %s", k.Dir)
		}
	})
	t.Logf("kubelet %s standalone on 127.0.0.1:%d, root %s, cgroup root %s, CRI %s (default runtime kata)", KubeletVersion, k.Port, k.Dir, cgroupRoot, d.Sock)

	uid := newUID()
	manifest := k.writeManifest(t, "sized", map[string]any{
		"apiVersion": "v1",
		"kind":       "Pod",
		"metadata":   map[string]any{"name": "sized", "namespace": "default", "uid": uid},
		"spec": map[string]any{
			"terminationGracePeriodSeconds": 2,
			"overhead":                      map[string]any{"memory": podOverhead},
			"containers": []map[string]any{{
				"name":            "app",
				"image":           ctrenv.Image,
				"imagePullPolicy": "Never",
				"command":         []string{"sh", "-c", fmt.Sprintf(holdCmd, holdMiB, holdMiB<<10*9/10)},
				"resources":       map[string]any{"limits": map[string]any{"memory": "1Gi", "cpu": strconv.Itoa(podCPUs)}},
				"readinessProbe": map[string]any{
					"exec":          map[string]any{"command": []string{"cat", "/tmp/touched"}},
					"periodSeconds": 1,
				},
			}},
		},
	})
	written := time.Now()

	// The kubelet runs it: Running, then Ready by its exec probe.
	var running, ready time.Duration
	for deadline := written.Add(3 * time.Minute); ; {
		p, ok, err := k.pod(uid)
		if err != nil {
			t.Fatalf("kubelet /pods: %v", err)
		}
		if ok && p.Status.Phase == "Running" && running == 0 {
			running = time.Since(written)
		}
		if ok && p.ready() {
			ready = time.Since(written)
			break
		}
		if time.Now().After(deadline) {
			logs, _ := crictlErr(d.Sock, "logs", "--tail", "20", strings.TrimSpace(func() string {
				out, _ := crictlErr(d.Sock, "ps", "-a", "-q", "--label", "io.kubernetes.pod.uid="+uid)
				return strings.SplitN(out, "\n", 2)[0]
			}()))
			t.Fatalf("pod %s not ready 3 min after its manifest: %+v; container log tail:\n%s", uid, p, logs)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("pod Running %.2f s and Ready (exec probe) %.2f s after its manifest", running.Seconds(), ready.Seconds())

	podID := crictl(t, d.Sock, "pods", "-q", "--label", "io.kubernetes.pod.uid="+uid)
	ctrID := crictl(t, d.Sock, "ps", "-q", "--label", "io.kubernetes.pod.uid="+uid, "--name", "app")
	if podID == "" || ctrID == "" || strings.ContainsAny(podID+ctrID, " \n") {
		t.Fatalf("CRI sandbox %q and container %q of pod %s", podID, ctrID, uid)
	}
	var insp struct {
		Info struct {
			RuntimeHandler string `json:"runtimeHandler"`
			RuntimeSpec    struct {
				Linux struct {
					CgroupsPath string `json:"cgroupsPath"`
					Namespaces  []struct{ Type, Path string }
				}
			} `json:"runtimeSpec"`
		}
	}
	if err := json.Unmarshal([]byte(crictl(t, d.Sock, "inspectp", "-o", "json", podID)), &insp); err != nil {
		t.Fatal(err)
	}
	netns := ""
	for _, n := range insp.Info.RuntimeSpec.Linux.Namespaces {
		if n.Type == "network" {
			netns = n.Path
		}
	}
	qemus := ctrenv.Pids(d.StateRoot, "qemu-system")
	if len(qemus) != 1 {
		t.Fatalf("VMs of this containerd: %v; want 1 (runtime handler %q)", qemus, insp.Info.RuntimeHandler)
	}
	sizeLine := ""
	for _, l := range strings.Split(d.Log.String(), "\n") {
		if strings.Contains(l, `msg="VM size"`) && strings.Contains(l, podID) {
			sizeLine = l
		}
	}
	t.Logf("sandbox %s (handler %q, cgroupsPath %s); shim: %s", podID, insp.Info.RuntimeHandler, insp.Info.RuntimeSpec.Linux.CgroupsPath, sizeLine)

	t.Run("a_GuestSize", func(t *testing.T) {
		out := crictl(t, d.Sock, "exec", "-s", ctrID, "sh", "-c", "grep MemTotal /proc/meminfo; grep -c ^processor /proc/cpuinfo")
		f := strings.Fields(out)
		if len(f) != 4 {
			t.Fatalf("guest meminfo/cpuinfo: %q", out)
		}
		memKB, _ := strconv.Atoi(f[1])
		cpus, _ := strconv.Atoi(f[3])
		t.Logf("(a) guest MemTotal %d kB (%d MiB), %d CPUs; the pod's limits: 1 GiB, %d CPUs", memKB, memKB>>10, cpus, podCPUs)
		if memKB < podMemBytes>>10 || cpus < podCPUs {
			t.Fatalf("(a) guest has %d kB and %d CPUs; the pod's limits are 1 GiB and %d CPUs", memKB, cpus, podCPUs)
		}
		if !strings.Contains(sizeLine, `rule="pod resources"`) {
			t.Errorf("(a) the shim did not size the VM from the pod's resources: %q", sizeLine)
		}
	})

	podCg := findPodCgroup(t, cgroupRoot, uid)
	t.Run("b_PodCgroup", func(t *testing.T) {
		dir := filepath.Join(memoryHierarchy(), podCg)
		procs := treeProcs(dir)
		vm := map[string][]int{
			"qemu":      qemus,
			"virtiofsd": ctrenv.Pids(d.StateRoot, "virtiofsd"),
		}
		if len(vm["virtiofsd"]) == 0 {
			t.Errorf("(b) no virtiofsd for the pod's VM")
		}
		for name, pids := range vm {
			for _, p := range pids {
				cg, ok := procs[p]
				if !ok {
					t.Errorf("(b) %s %d is not in the kubelet's pod cgroup %s (it is in %s)", name, p, podCg, procCgroup(p))
					continue
				}
				t.Logf("(b) %s %d is in %s", name, p, cg)
			}
		}
		limitFile := "memory.limit_in_bytes"
		if cgroupV2() {
			limitFile = "memory.max"
		}
		limit := readInt(t, filepath.Join(dir, limitFile))
		t.Logf("(b) kubelet's pod cgroup %s: memory limit %d MiB (1 GiB of limits + %s overhead); VM %d MiB", podCg, limit>>20, podOverhead, vmMiB)
		if limit < int64(vmMiB)<<20 {
			t.Errorf("(b) pod cgroup memory limit %d MiB < VM size %d MiB", limit>>20, vmMiB)
		}
	})

	t.Run("c_StatsSummary", func(t *testing.T) {
		// cAdvisor's housekeeping reaches a new cgroup within seconds;
		// until then the pod's entry may carry zeros.
		var s podSummary
		asked := time.Now()
		for deadline := asked.Add(90 * time.Second); ; {
			got, ok, err := k.summary(uid)
			if err != nil {
				t.Fatalf("(c) /stats/summary: %v", err)
			}
			if ok && got.Memory != nil && got.Memory.WorkingSetBytes != nil && *got.Memory.WorkingSetBytes > 0 {
				s = got
				break
			}
			if time.Now().After(deadline) {
				b, _ := json.Marshal(got)
				stat, _ := os.ReadFile(filepath.Join(memoryHierarchy(), podCg, "memory.stat"))
				t.Fatalf("(c) no non-zero memory for pod %s in /stats/summary after 90 s: %s\npod cgroup memory.stat:\n%s", uid, b, stat)
			}
			time.Sleep(time.Second)
		}
		t.Logf("(c) the pod's memory in /stats/summary after %.1f s: %s", time.Since(asked).Seconds(), func() string { b, _ := json.Marshal(s.Memory); return string(b) }())
		ws := int64(*s.Memory.WorkingSetBytes)
		var ctrWS int64 = -1
		for _, c := range s.Containers {
			if c.Name == "app" && c.Memory != nil && c.Memory.WorkingSetBytes != nil {
				ctrWS = int64(*c.Memory.WorkingSetBytes)
			}
		}
		usage := readInt(t, filepath.Join(memoryHierarchy(), podCg, map[bool]string{false: "memory.usage_in_bytes", true: "memory.current"}[cgroupV2()]))
		t.Logf("(c) /stats/summary pod %s memory workingSet %d MiB (container app: %d MiB); pod cgroup usage now %d MiB (%s)", s.PodRef.Name, ws>>20, ctrWS>>20, usage>>20, memStat(filepath.Join(memoryHierarchy(), podCg)))
		if ws < (holdMiB+vmFloorMiB)<<20 {
			t.Errorf("(c) the kubelet counts %d MiB for the pod, under the %d MiB its container holds in the guest + %d MiB: not its VM", ws>>20, holdMiB, vmFloorMiB)
		}
		if ctrWS >= 0 && ws < ctrWS+vmFloorMiB<<20 {
			t.Errorf("(c) pod workingSet %d MiB is not above its container's %d MiB by the VM's %d MiB: the VM is not counted", ws>>20, ctrWS>>20, vmFloorMiB)
		}
		// The figure is the pod cgroup's (where the VM lives), not a sum
		// of containers.
		if s.Memory.UsageBytes == nil || float64(*s.Memory.UsageBytes) < 0.8*float64(usage) || float64(*s.Memory.UsageBytes) > 1.25*float64(usage) {
			t.Errorf("(c) summary usage %v, pod cgroup usage %d: not the pod cgroup's figure", s.Memory.UsageBytes, usage)
		}
	})

	// (d) The kubelet tears the pod down when its manifest goes.
	t.Run("d_Teardown", func(t *testing.T) {
		if netns == "" || !strings.Contains(netnsLinks(t, netns), "tap0_kata") {
			t.Fatalf("(d) no tap0_kata in the pod's network namespace %q: the check below would prove nothing", netns)
		}
		if err := os.Remove(manifest); err != nil {
			t.Fatal(err)
		}
		removed := time.Now()
		var vmGone, allGone time.Duration
		var left []string
		for deadline := removed.Add(3 * time.Minute); ; {
			left = d.Leftovers()
			if len(ctrenv.Pids(d.StateRoot, "qemu-system")) == 0 && vmGone == 0 {
				vmGone = time.Since(removed)
			}
			for _, m := range ctrenv.MountsUnder(d.Dir) {
				left = append(left, "mount "+m)
			}
			for _, c := range cgroupTree(podCg) {
				left = append(left, "cgroup "+c)
			}
			if testenv.Exists(netns) {
				left = append(left, "netns "+netns)
			}
			for _, l := range hostLinks(t) {
				if strings.HasPrefix(l, "tap") && !slices.Contains(linksBefore, l) {
					left = append(left, "link "+l)
				}
			}
			if out, _ := crictlErr(d.Sock, "pods", "-q"); strings.TrimSpace(out) != "" {
				left = append(left, "CRI pod "+strings.TrimSpace(out))
			}
			if _, ok, _ := k.pod(uid); ok {
				left = append(left, "kubelet pod "+uid)
			}
			if len(left) == 0 {
				allGone = time.Since(removed)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("(d) 3 min after the manifest was removed, left: %s", strings.Join(left, "; "))
			}
			time.Sleep(500 * time.Millisecond)
		}
		t.Logf("(d) manifest removed: VM gone after %.1f s; no VM, shim, pod cgroup, mount under %s, netns, tap or CRI pod after %.1f s", vmGone.Seconds(), d.Dir, allGone.Seconds())
	})
}

// findPodCgroup is the kubelet's cgroup of the pod with uid (cgroupfs
// driver: <root>/kubepods[/<qos>]/pod<uid>), relative to a hierarchy.
func findPodCgroup(t *testing.T, root, uid string) string {
	t.Helper()
	h := memoryHierarchy()
	for _, pattern := range []string{"kubepods/pod" + uid, "kubepods/*/pod" + uid} {
		if m, _ := filepath.Glob(filepath.Join(h, root, pattern)); len(m) == 1 {
			return strings.TrimPrefix(m[0], h)
		}
	}
	t.Fatalf("no kubelet pod cgroup for %s under %s", uid, filepath.Join(h, root))
	return ""
}

// memStat is the main lines of a memory cgroup's memory.stat (its
// subtree's), in MiB.
func memStat(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, "memory.stat"))
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		// v1's plain lines count the cgroup alone; its total_ lines
		// count the cgroups below it too (the VM is in the sandbox's).
		f := strings.Fields(strings.TrimPrefix(l, "total_"))
		if len(f) == 2 && (cgroupV2() || strings.HasPrefix(l, "total_")) && slices.Contains([]string{"rss", "cache", "shmem", "mapped_file", "inactive_file", "active_file", "inactive_anon", "active_anon", "anon", "file"}, f[0]) {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			out = append(out, fmt.Sprintf("%s %d", f[0], n>>20))
		}
	}
	return "memory.stat MiB: " + strings.Join(out, ", ")
}

// procCgroup is pid's memory cgroup, from /proc/PID/cgroup.
func procCgroup(pid int) string {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && (strings.Contains(f[1], "memory") || (cgroupV2() && f[1] == "")) {
			return f[2]
		}
	}
	return strings.TrimSpace(string(b))
}
