package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

// templateEnv is a template store in a temporary directory and a config
// that restores pods from it.
type templateEnv struct {
	d         *ctrenv.Daemon
	shim, cfg string
	dir       string
}

func newTemplateEnv(d *ctrenv.Daemon, shim string) *templateEnv {
	dir, err := os.MkdirTemp("/var/tmp", "kgo-bench-tmpl-") // a template store must be on disk
	if err != nil {
		fail("%v", err)
	}
	b, err := os.ReadFile(d.KataCfg)
	if err != nil {
		fail("%v", err)
	}
	cfg := filepath.Join(dir, "kata.toml")
	extra := fmt.Sprintf("\n[factory]\nenable_template = true\ntemplate_path = %q\n", filepath.Join(dir, "store"))
	if err := os.WriteFile(cfg, append(b, extra...), 0o644); err != nil {
		fail("%v", err)
	}
	return &templateEnv{d: d, shim: shim, cfg: cfg, dir: dir}
}

func (e *templateEnv) close() {
	if out, err := exec.Command(e.shim, "template", "delete", "-config", e.cfg).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "template delete: %v %s\n", err, out)
	}
	os.RemoveAll(e.dir)
}

// templateBench measures pods restored from a VM template: the restored
// start and its phases beside the cold one (coldMs, runc's runcMs), 10
// pods started at once, and host PSS per pod for 1, 3 and 10 pods.
func templateBench(d *ctrenv.Daemon, shim string, coldMs, runcMs []float64) []Result {
	e := newTemplateEnv(d, shim)
	defer e.close()
	start := time.Now()
	if out, err := exec.Command(e.shim, "template", "create", "-config", e.cfg, "-nics", "0").CombinedOutput(); err != nil {
		fail("template create: %v %s", err, out)
	}
	made := float64(time.Since(start).Milliseconds())
	out := []Result{{Name: "template create (once)", Unit: "ms", Kata: Stat{made, made, made, 1}}}

	from := len(d.Log.String())
	var ms []float64
	cpu0 := busyCPU()
	for i := 0; i < *runs; i++ {
		id := fmt.Sprintf("tmpl-%d", i)
		t0 := time.Now()
		must(d.Ctr("run", "--rm", "--runtime", kata, "--runtime-config-path", e.cfg, ctrenv.Image, id, "true"))
		ms = append(ms, float64(time.Since(t0).Microseconds())/1000)
	}
	log := d.Log.String()[from:]
	if n := strings.Count(log, "VM restored from template"); n != *runs {
		fail("%d of %d runs were restored from the template; the log says why:\n%s", n, *runs, ctrenv.Tail(log, 40))
	}
	cpu := (busyCPU() - cpu0) / float64(*runs)
	r := Result{Name: "restored start (ctr run --rm true)", Unit: "ms", Kata: stat(ms), Runc: ptr(stat(runcMs)), Note: "target <= 6x runc"}
	out = append(out, r, Result{Name: "  host CPU per restored run (all processes)", Unit: "s", Kata: Stat{cpu, cpu, cpu, 1}})
	if len(coldMs) > 0 {
		c := stat(coldMs).Median
		out = append(out, Result{Name: "  restored / cold start", Unit: "x", Kata: Stat{r.Kata.Median / c, r.Kata.Median / c, r.Kata.Median / c, 1}})
	}
	phases := bootPhases(log)
	for _, name := range phaseOrder {
		if xs := phases[name]; len(xs) > 0 {
			note := ""
			if name == "vm boot (vmm spawned -> agent)" {
				note = "restore; target <= 80"
			}
			out = append(out, Result{Name: "  " + name, Unit: "ms", Kata: stat(xs), Note: note})
		}
	}
	out = append(out, templateParallel(e)...)
	for _, n := range []int{1, 3, 10} {
		out = append(out, templatePSS(e, n)...)
	}
	return out
}

// templateParallel starts *parallel pods from the template at once.
func templateParallel(e *templateEnv) []Result {
	ids := make([]string, *parallel)
	for i := range ids {
		ids[i] = fmt.Sprintf("tpar-%d", i)
	}
	cpu0 := busyCPU()
	wall, failed := startAtOnce(e.d, ids, "--runtime", kata, "--runtime-config-path", e.cfg)
	cpu := busyCPU() - cpu0
	for _, id := range ids {
		e.d.Remove(id)
	}
	return []Result{{Name: fmt.Sprintf("%d parallel pods from a template: wall", *parallel), Unit: "s", Kata: Stat{wall, wall, wall, 1},
		Note: fmt.Sprintf("%d/%d failed; target <= 3 s; host CPU %.1f s (%.2f s a pod), busy %.0f%% of %d cores",
			failed, *parallel, cpu, cpu/float64(*parallel), 100*cpu/wall/float64(runtime.NumCPU()), runtime.NumCPU())}}
}

// templatePSS runs n pods from the template, each after its container
// started, and reports the host's PSS per pod: shim and QEMU (the guest RAM
// they share through the template's file is split between them by PSS).
func templatePSS(e *templateEnv, n int) []Result {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("tpss-%d-%d", n, i)
		must(e.d.Ctr("run", "-d", "--runtime", kata, "--runtime-config-path", e.cfg, ctrenv.Image, ids[i], "sleep", "1000"))
	}
	defer func() {
		for _, id := range ids {
			e.d.Remove(id)
		}
	}()
	for _, id := range ids {
		if err := e.d.WaitStatus(id, "RUNNING"); err != nil {
			fail("%v", err)
		}
	}
	var cpu []Result
	if n == 1 {
		cpu = podCPU(e, ids[0])
	}
	time.Sleep(3 * time.Second) // let the guests settle
	var pss int64
	for _, id := range ids {
		for _, p := range ctrenv.Pids(e.d.Sock, "containerd-shim-kata-v2", "-id "+id+" ") {
			pss += ctrenv.PSS(p)
		}
	}
	for _, p := range ctrenv.Pids(e.d.StateRoot, "qemu-system") {
		pss += ctrenv.PSS(p)
	}
	per := float64(pss) / float64(n) / (1 << 20)
	return append(cpu, Result{Name: fmt.Sprintf("PSS per pod, %d from one template", n), Unit: "MiB", Kata: Stat{per, per, per, 1}, Note: "shim + qemu, guest RAM incl.; target <= 100 at 10"})
}

// podCPU is the host CPU a restored pod's own processes used from their
// start until its container ran, split by process: it says which of them
// the parallel starts' CPU goes to.
func podCPU(e *templateEnv, id string) []Result {
	var shim, qemu float64
	for _, p := range ctrenv.Pids(e.d.Sock, "containerd-shim-kata-v2", "-id "+id+" ") {
		shim += procCPU(p)
	}
	for _, p := range ctrenv.Pids(e.d.StateRoot, "qemu-system") {
		qemu += procCPU(p)
	}
	qemu, shim = qemu*1000, shim*1000
	return []Result{
		{Name: "  host CPU of a restored pod until running: qemu", Unit: "ms", Kata: Stat{qemu, qemu, qemu, 1}},
		{Name: "  host CPU of a restored pod until running: shim", Unit: "ms", Kata: Stat{shim, shim, shim, 1}},
	}
}
