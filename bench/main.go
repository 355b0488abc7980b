// Command bench measures kata-go against runc on one private containerd,
// in one run: cold start (with kata's boot phases), the start restored
// from a VM template (its phases, parallel starts and PSS per pod), exec
// latency, stdout throughput, idle memory and parallel starts. It prints a table with
// kata/runc ratios and writes bench/results/latest.{json,svg}.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

const (
	kata = "io.containerd.kata.v2"
	runc = "io.containerd.runc.v2"
)

var (
	runs      = flag.Int("n", 10, "runs per measurement")
	stdoutMiB = flag.Int("stdout-mib", 256, "MiB of stdout for the throughput test")
	parallel  = flag.Int("parallel", 10, "pods started at once")
	outDir    = flag.String("out", "bench/results", "where latest.json and latest.svg go")
	extra     = flag.String("kata-config", "", "extra TOML for the kata-go config (e.g. to try a setting)")
	boots     = flag.Int("boots", 5, "direct VM boots per machine type (0 skips)")
	logFile   = flag.String("log", "", "write containerd's log (the shims' and guests' lines included) to this file at the end")
	only      = flag.String("only", "", "run one piece: overhead (the RuntimeClass pod overhead; writes overhead.json) or template (cold vs restored starts)")
)

// Stat is min/median/max of a sample.
type Stat struct {
	Min, Median, Max float64
	N                int
}

func stat(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return Stat{Min: s[0], Median: s[len(s)/2], Max: s[len(s)-1], N: len(s)}
}

// Result is one line of the table.
type Result struct {
	Name  string
	Unit  string
	Kata  Stat
	Runc  *Stat `json:",omitempty"`
	Ratio float64
	Note  string `json:",omitempty"`
}

type report struct {
	When    time.Time
	Machine string
	Accel   string
	Results []Result
}

func main() {
	flag.Parse()
	root, _ := os.Getwd()
	shim := filepath.Join(root, "bin", "containerd-shim-kata-v2")
	for _, f := range []string{shim, "guest/out/vmlinux", "guest/out/initrd.img"} {
		if _, err := os.Stat(f); err != nil {
			fail("missing %s: run make build guest (make bench does)", f)
		}
	}
	d, err := ctrenv.Start(ctrenv.Specs()[0], ctrenv.Options{
		ShimDir: filepath.Dir(shim), Kernel: filepath.Join(root, "guest/out/vmlinux"),
		Initrd: filepath.Join(root, "guest/out/initrd.img"), ExtraConfig: *extra,
	})
	if err != nil {
		fail("start containerd: %v", err)
	}
	defer d.Stop()
	if *logFile != "" {
		defer func() {
			if err := os.WriteFile(*logFile, []byte(d.Log.String()), 0o644); err != nil {
				fmt.Fprintf(os.Stderr, "write log: %v\n", err)
			}
		}()
	}
	rep := report{When: time.Now().UTC(), Machine: machine()}
	add := func(r Result) {
		if r.Runc != nil && r.Runc.Median > 0 {
			r.Ratio = r.Kata.Median / r.Runc.Median
		}
		rep.Results = append(rep.Results, r)
		printResult(r)
	}
	fmt.Printf("kata-go vs runc on %s, containerd %s, %d runs each\n\n", rep.Machine, d.Spec.Name, *runs)
	fmt.Printf("%-34s %10s %10s %10s   %10s %8s\n", "measurement", "kata min", "median", "max", "runc med", "ratio")
	if *only == "overhead" {
		for _, r := range podOverhead(d) {
			add(r)
		}
		rep.Accel = accel(d.Log.String())
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(filepath.Join(*outDir, "overhead.json"), b, 0o644); err != nil {
			fail("write report: %v", err)
		}
		fmt.Printf("\naccelerator: %s\nwrote %s/overhead.json\n", rep.Accel, *outDir)
		return
	} else if *only == "template" {
		ck, cr := coldStart(d, kata), coldStart(d, runc)
		add(Result{Name: "cold start (ctr run --rm true)", Unit: "ms", Kata: stat(ck), Runc: ptr(stat(cr))})
		for _, r := range templateBench(d, shim, ck, cr) {
			add(r)
		}
		rep.Accel = accel(d.Log.String())
		fmt.Printf("\naccelerator: %s\n", rep.Accel)
		return
	} else if *only != "" {
		fail("-only %q: want overhead or template", *only)
	}

	if *boots > 0 {
		for _, r := range bootBench(root, *boots) {
			add(r)
		}
	}

	// Cold start, and the boot phases kata's shim logs for each run.
	ck, cr := coldStart(d, kata), coldStart(d, runc)
	add(Result{Name: "cold start (ctr run --rm true)", Unit: "ms", Kata: stat(ck), Runc: ptr(stat(cr))})
	phases := bootPhases(d.Log.String())
	boot := phases["vm boot (vmm spawned -> agent)"]
	for _, name := range phaseOrder {
		if xs := phases[name]; len(xs) > 0 {
			add(Result{Name: "  " + name, Unit: "ms", Kata: stat(xs)})
		}
	}
	if len(boot) > 0 {
		overhead := make([]float64, 0, len(ck))
		for i := range ck {
			if i < len(boot) {
				overhead = append(overhead, ck[i]-boot[i])
			}
		}
		add(Result{Name: "runtime overhead (cold start - vm boot)", Unit: "ms", Kata: stat(overhead), Note: "target <= 100 ms"})
	}
	rep.Accel = accel(d.Log.String())
	for _, r := range templateBench(d, shim, ck, cr) {
		add(r)
	}

	add(Result{Name: "exec latency (ctr task exec true)", Unit: "ms", Kata: stat(execLatency(d, kata)), Runc: ptr(stat(execLatency(d, runc)))})

	tk, tr := throughput(d, kata), throughput(d, runc)
	add(Result{Name: fmt.Sprintf("stdout throughput (%d MiB)", *stdoutMiB), Unit: "MB/s", Kata: stat(tk), Runc: ptr(stat(tr)), Note: "higher is better; target >= 0.5x"})

	for _, r := range idleMemory(d) {
		add(r)
	}
	for _, r := range podOverhead(d) {
		add(r)
	}
	for _, r := range parallelStarts(d) {
		add(r)
	}
	if err := writeReport(rep); err != nil {
		fail("write report: %v", err)
	}
	fmt.Printf("\naccelerator: %s\nwrote %s/latest.json and latest.svg\n", rep.Accel, *outDir)
}

func ptr(s Stat) *Stat { return &s }

func printResult(r Result) {
	rc, ratio := "", ""
	if r.Runc != nil {
		rc = fmt.Sprintf("%10.1f", r.Runc.Median)
		ratio = fmt.Sprintf("%7.2fx", r.Ratio)
	}
	fmt.Printf("%-34s %10.1f %10.1f %10.1f   %10s %8s  %s %s\n", r.Name, r.Kata.Min, r.Kata.Median, r.Kata.Max, rc, ratio, r.Unit, r.Note)
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

func must(out, errOut string, err error) {
	if err != nil {
		fail("%v: %s %s", err, out, errOut)
	}
}

func coldStart(d *ctrenv.Daemon, rt string) []float64 {
	var ms []float64
	for i := 0; i < *runs; i++ {
		id := fmt.Sprintf("cold-%s-%d", short(rt), i)
		start := time.Now()
		must(d.Ctr("run", "--rm", "--runtime", rt, ctrenv.Image, id, "true"))
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	return ms
}

func short(rt string) string { return strings.Split(strings.TrimPrefix(rt, "io.containerd."), ".")[0] }

var phaseOrder = []string{
	"shim start -> sandbox begin", "vmm spawn (begin -> vmm spawned)", "vm boot (vmm spawned -> agent)",
	"  guest kernel + agent (guest uptime)", "create container (agent -> created)", "start (created -> started)",
	"run + exit seen (started -> exit)",
}

var phaseLine = regexp.MustCompile(`boot phases.*`)

// bootPhases parses the shim's "boot phases" log lines.
func bootPhases(log string) map[string][]float64 {
	out := map[string][]float64{}
	for _, line := range phaseLine.FindAllString(log, -1) {
		v := map[string]float64{}
		for _, f := range strings.Fields(line) {
			k, val, ok := strings.Cut(f, "=")
			if ok && strings.HasSuffix(k, "_ms") {
				x, _ := strconv.ParseFloat(strings.Trim(val, `"\`), 64)
				v[k] = x
			}
		}
		add := func(name string, x float64) { out[name] = append(out[name], x) }
		add(phaseOrder[0], v["sandbox_begin_ms"])
		add(phaseOrder[1], v["vmm_spawned_ms"]-v["sandbox_begin_ms"])
		add(phaseOrder[2], v["agent_ready_ms"]-v["vmm_spawned_ms"])
		add(phaseOrder[3], v["guest_agent_uptime_ms"])
		add(phaseOrder[4], v["container_created_ms"]-v["agent_ready_ms"])
		add(phaseOrder[5], v["container_started_ms"]-v["container_created_ms"])
		add(phaseOrder[6], v["exit_seen_ms"]-v["container_started_ms"])
	}
	return out
}

var accelLine = regexp.MustCompile(`accelerator chosen.*`)

func accel(log string) string {
	if m := accelLine.FindString(log); m != "" {
		return strings.ReplaceAll(strings.TrimSpace(m), `\"`, `"`)
	}
	return "unknown"
}

func execLatency(d *ctrenv.Daemon, rt string) []float64 {
	id := "exec-" + short(rt)
	must(d.Ctr("run", "-d", "--runtime", rt, ctrenv.Image, id, "sleep", "1000"))
	defer d.Remove(id)
	if err := d.WaitStatus(id, "RUNNING"); err != nil {
		fail("%v", err)
	}
	var ms []float64
	for i := 0; i < *runs; i++ {
		start := time.Now()
		must(d.Ctr("task", "exec", "--exec-id", fmt.Sprintf("e%d", i), id, "true"))
		ms = append(ms, float64(time.Since(start).Microseconds())/1000)
	}
	return ms
}

func throughput(d *ctrenv.Daemon, rt string) []float64 {
	n := 3
	var mbs []float64
	for i := 0; i < n; i++ {
		f, err := os.CreateTemp("", "kata-go-bench-")
		if err != nil {
			fail("%v", err)
		}
		cmd := d.CtrCmd("run", "--rm", "--runtime", rt, ctrenv.Image, fmt.Sprintf("tp-%s-%d", short(rt), i),
			"dd", "if=/dev/zero", "bs=1M", fmt.Sprintf("count=%d", *stdoutMiB))
		cmd.Stdout = f
		start := time.Now()
		err = cmd.Run()
		took := time.Since(start).Seconds()
		fi, _ := f.Stat()
		f.Close()
		os.Remove(f.Name())
		if err != nil || fi.Size() != int64(*stdoutMiB)<<20 {
			fail("throughput run with %s: %v, %d bytes", rt, err, fi.Size())
		}
		mbs = append(mbs, float64(fi.Size())/1e6/took)
	}
	return mbs
}

func idleMemory(d *ctrenv.Daemon) []Result {
	must(d.Ctr("run", "-d", "--runtime", kata, ctrenv.Image, "idle-kata", "sleep", "1000"))
	must(d.Ctr("run", "-d", "--runtime", runc, ctrenv.Image, "idle-runc", "sleep", "1000"))
	defer d.Remove("idle-kata")
	defer d.Remove("idle-runc")
	_ = d.WaitStatus("idle-kata", "RUNNING")
	_ = d.WaitStatus("idle-runc", "RUNNING")
	time.Sleep(3 * time.Second) // let the guest settle
	mib := func(pids []int) float64 {
		var sum int64
		for _, p := range pids {
			sum += ctrenv.PSS(p)
		}
		return float64(sum) / (1 << 20)
	}
	shim := mib(ctrenv.Pids(d.Sock, "containerd-shim-kata-v2", "-id idle-kata "))
	qemu := mib(ctrenv.Pids(d.StateRoot, "qemu-system"))
	vfs := mib(ctrenv.Pids(d.StateRoot, "virtiofsd --socket-path"))
	runcShim := mib(ctrenv.Pids(d.Sock, "containerd-shim-runc-v2", "-id idle-runc "))
	total := shim + qemu + vfs
	var noRAM int64
	for _, p := range append(ctrenv.Pids(d.StateRoot, "qemu-system"), ctrenv.Pids(d.StateRoot, "virtiofsd --socket-path")...) {
		noRAM += ctrenv.PSSExcept(p, "memory-backend")
	}
	for _, p := range ctrenv.Pids(d.Sock, "containerd-shim-kata-v2", "-id idle-kata ") {
		noRAM += ctrenv.PSS(p)
	}
	overhead := float64(noRAM) / (1 << 20)
	// Under TCG QEMU also holds its translation cache (anonymous memory that
	// KVM does not need); report the figure without it as well.
	var tb int64
	for _, p := range ctrenv.Pids(d.StateRoot, "qemu-system") {
		tb += ctrenv.LargestAnon(p)
	}
	kvmLike := overhead - float64(tb)/(1<<20)
	return []Result{
		{Name: "idle pod PSS: shim", Unit: "MiB", Kata: Stat{shim, shim, shim, 1}},
		{Name: "idle pod PSS: qemu (incl. guest RAM touched)", Unit: "MiB", Kata: Stat{qemu, qemu, qemu, 1}},
		{Name: "idle pod PSS: virtiofsd", Unit: "MiB", Kata: Stat{vfs, vfs, vfs, 1}},
		{Name: "idle pod PSS: total", Unit: "MiB", Kata: Stat{total, total, total, 1}, Runc: &Stat{runcShim, runcShim, runcShim, 1}, Note: "runc: its shim"},
		{Name: "idle pod PSS excluding guest RAM", Unit: "MiB", Kata: Stat{overhead, overhead, overhead, 1}, Note: "shim + qemu + virtiofsd, TCG"},
		{Name: "  ... and the TCG translation cache", Unit: "MiB", Kata: Stat{kvmLike, kvmLike, kvmLike, 1}, Note: "what KVM would cost; target <= 40"},
	}
}

func parallelStarts(d *ctrenv.Daemon) []Result {
	var out []Result
	for _, rt := range []string{kata, runc} {
		ids := make([]string, *parallel)
		for i := range ids {
			ids[i] = fmt.Sprintf("par-%s-%d", short(rt), i)
		}
		wall, failed := startAtOnce(d, ids, "--runtime", rt)
		var pss int64
		for _, p := range ctrenv.Pids(d.Sock, "-address") {
			pss += ctrenv.PSS(p)
		}
		for _, p := range ctrenv.Pids(d.StateRoot) {
			pss += ctrenv.PSS(p)
		}
		for _, id := range ids {
			d.Remove(id)
		}
		note := fmt.Sprintf("%d/%d failed; total PSS %.0f MiB", failed, *parallel, float64(pss)/(1<<20))
		out = append(out, Result{Name: fmt.Sprintf("%d parallel pods (%s): wall", *parallel, short(rt)), Unit: "s", Kata: Stat{wall, wall, wall, 1}, Note: note})
	}
	return out
}

// startAtOnce runs `ctr run -d <runArgs> image id sleep 1000` for every id
// at once and waits until all are running (or failed): the wall time in
// seconds and how many failed. The caller removes them.
func startAtOnce(d *ctrenv.Daemon, ids []string, runArgs ...string) (float64, int) {
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	start := time.Now()
	for i := range ids {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			args := append(append([]string{"run", "-d"}, runArgs...), ctrenv.Image, ids[i], "sleep", "1000")
			if _, e, err := d.Ctr(args...); err != nil {
				errs[i] = fmt.Errorf("%v: %s", err, e)
				return
			}
			errs[i] = d.WaitStatus(ids[i], "RUNNING")
		}(i)
	}
	wg.Wait()
	wall := time.Since(start).Seconds()
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
			fmt.Fprintln(os.Stderr, "parallel start failed:", err)
		}
	}
	return wall, failed
}

func machine() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	model := "unknown cpu"
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "model name") {
			_, model, _ = strings.Cut(l, ":")
			break
		}
	}
	return fmt.Sprintf("%s, %d cpus", strings.TrimSpace(model), strings.Count(string(b), "processor\t:"))
}

func writeReport(r report) error {
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(*outDir, "latest.json"), b, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(*outDir, "latest.svg"), []byte(chart(r)), 0o644)
}

// chart draws kata/runc ratios (log scale) for the rows that have both.
func chart(r report) string {
	var rows []Result
	for _, x := range r.Results {
		if x.Runc != nil && x.Ratio > 0 {
			rows = append(rows, x)
		}
	}
	const w, rowH, left = 760, 34, 300
	h := 60 + rowH*len(rows)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="10" y="22" font-size="15">kata-go / runc, median (1.0 = same as runc; log scale)</text>`)
	scale := func(x float64) float64 { // log10 from 0.01 to 1000 over the plot width
		l := (logf(x) + 2) / 5
		return left + l*float64(w-left-20)
	}
	one := scale(1)
	fmt.Fprintf(&b, `<line x1="%.0f" y1="35" x2="%.0f" y2="%d" stroke="#888" stroke-dasharray="4"/>`, one, one, h-10)
	for i, x := range rows {
		y := 45 + i*rowH
		x0, x1 := one, scale(x.Ratio)
		if x1 < x0 {
			x0, x1 = x1, x0
		}
		fmt.Fprintf(&b, `<text x="10" y="%d">%s</text>`, y+16, x.Name)
		fmt.Fprintf(&b, `<rect x="%.0f" y="%d" width="%.0f" height="20" fill="#4a7bd0"/>`, x0, y+2, max(x1-x0, 1))
		fmt.Fprintf(&b, `<text x="%.0f" y="%d">%.2fx</text>`, x1+4, y+16, x.Ratio)
	}
	b.WriteString(`</svg>`)
	return b.String()
}

func logf(x float64) float64 {
	l := 0.0
	for x >= 10 {
		x /= 10
		l++
	}
	for x < 1 {
		x *= 10
		l--
	}
	return l + (x-1)/9 // piecewise-linear within a decade: enough for a bar chart
}
