package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

var overheadRuns = flag.Int("overhead-runs", 3, "idle pods measured one after another for the RuntimeClass overhead")

// overheadSample is what one idle pod costs the host, in bytes of PSS.
type overheadSample struct {
	shim, virtiofsd int64
	// qemuOwn is QEMU without the guest RAM and without the TCG
	// translation cache; tb is that cache; guestRAM the guest RAM the
	// guest touched (all of it is the pod's, up to the VM's size).
	qemuOwn, tb, guestRAM int64
	// cgroupUsage is the pod cgroup's memory usage (what the kubelet
	// sees for the pod); -1 when the VM has no host cgroup.
	cgroupUsage int64
	inCgroup    bool
}

// podOverhead measures the host memory an idle pod costs beyond its guest
// RAM: the shim, virtiofsd (with its sandboxed worker) and QEMU outside
// the guest RAM's memfd, with TCG's translation cache (QEMU's largest
// anonymous mapping; KVM has none) shown apart. That figure, plus the
// guest's base RAM, is a RuntimeClass's overhead.podFixed.
func podOverhead(d *ctrenv.Daemon) []Result {
	var samples []overheadSample
	for i := 0; i < *overheadRuns; i++ {
		samples = append(samples, measureIdlePod(d, fmt.Sprintf("ovh-%d", i)))
	}
	mib := func(f func(overheadSample) int64) Stat {
		var xs []float64
		for _, s := range samples {
			xs = append(xs, float64(f(s))/(1<<20))
		}
		return stat(xs)
	}
	beyond := func(s overheadSample) int64 { return s.shim + s.virtiofsd + s.qemuOwn + s.tb }
	kvmLike := func(s overheadSample) int64 { return s.shim + s.virtiofsd + s.qemuOwn }
	out := []Result{
		{Name: "pod overhead: shim", Unit: "MiB", Kata: mib(func(s overheadSample) int64 { return s.shim })},
		{Name: "pod overhead: virtiofsd", Unit: "MiB", Kata: mib(func(s overheadSample) int64 { return s.virtiofsd })},
		{Name: "pod overhead: qemu w/o guest RAM, TCG cache", Unit: "MiB", Kata: mib(func(s overheadSample) int64 { return s.qemuOwn })},
		{Name: "pod overhead: TCG translation cache", Unit: "MiB", Kata: mib(func(s overheadSample) int64 { return s.tb }), Note: "none under KVM"},
		{Name: "pod overhead beyond guest RAM (TCG)", Unit: "MiB", Kata: mib(beyond), Note: "shim + virtiofsd + qemu"},
		{Name: "pod overhead beyond guest RAM (KVM)", Unit: "MiB", Kata: mib(kvmLike), Note: "the same without the TCG cache: RuntimeClass podFixed = this + base guest RAM"},
		{Name: "idle guest RAM touched", Unit: "MiB", Kata: mib(func(s overheadSample) int64 { return s.guestRAM })},
	}
	if samples[0].cgroupUsage >= 0 {
		note := "the VM's processes are in it"
		for _, s := range samples {
			if !s.inCgroup {
				note = "VM processes MISSING from the pod cgroup"
			}
		}
		out = append(out, Result{Name: "pod cgroup memory usage (kubelet's view)", Unit: "MiB", Kata: mib(func(s overheadSample) int64 { return s.cgroupUsage }), Note: note})
	}
	return out
}

func measureIdlePod(d *ctrenv.Daemon, id string) overheadSample {
	must(d.Ctr("run", "-d", "--runtime", kata, ctrenv.Image, id, "sleep", "1000"))
	defer d.Remove(id)
	_ = d.WaitStatus(id, "RUNNING")
	time.Sleep(3 * time.Second) // let the guest settle
	var s overheadSample
	shims := ctrenv.Pids(d.Sock, "containerd-shim-kata-v2", "-id "+id+" ")
	qemus := ctrenv.Pids(d.StateRoot, "qemu-system")
	vfs := ctrenv.Pids(d.StateRoot, "virtiofsd --socket-path")
	if len(shims) != 1 || len(qemus) != 1 || len(vfs) == 0 {
		fail("pod %s: shims %v, qemus %v, virtiofsd %v; want one pod's", id, shims, qemus, vfs)
	}
	s.shim = ctrenv.PSS(shims[0])
	for _, p := range vfs {
		s.virtiofsd += ctrenv.PSS(p)
	}
	q := qemus[0]
	noRAM := ctrenv.PSSExcept(q, "memory-backend")
	s.tb = ctrenv.LargestAnon(q)
	s.qemuOwn = noRAM - s.tb
	s.guestRAM = ctrenv.PSS(q) - noRAM
	// ctr's default spec gives the task the cgroupsPath /<namespace>/<id>.
	s.cgroupUsage, s.inCgroup = podCgroup("/default/"+id, append(qemus, vfs...))
	return s
}

// podCgroup reads a pod cgroup's memory usage and whether pids are in it.
func podCgroup(cg string, pids []int) (int64, bool) {
	dir, usage := filepath.Join("/sys/fs/cgroup/memory", cg), "memory.usage_in_bytes"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		dir, usage = filepath.Join("/sys/fs/cgroup", cg), "memory.current"
	}
	b, err := os.ReadFile(filepath.Join(dir, usage))
	if err != nil {
		return -1, false
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	procs, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	in := true
	for _, p := range pids {
		in = in && slices.Contains(strings.Fields(string(procs)), strconv.Itoa(p))
	}
	return n, in
}
