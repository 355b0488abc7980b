package metrics

import (
	"context"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func TestReadMemory(t *testing.T) {
	old := procRoot
	procRoot = t.TempDir()
	t.Cleanup(func() { procRoot = old })
	dir := filepath.Join(procRoot, "42")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	rollup := "55d0-7ffc ---p 00000000 00:00 0 [rollup]\nRss:              205520 kB\nPss:              101234 kB\nPss_Anon:          90000 kB\n"
	if err := os.WriteFile(filepath.Join(dir, "smaps_rollup"), []byte(rollup), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := ReadMemory(42)
	if err != nil || m.RSS != 205520*1024 || m.PSS != 101234*1024 {
		t.Fatalf("got %+v, %v", m, err)
	}
	if _, err := ReadMemory(43); err == nil {
		t.Error("no error for a pid that is gone")
	}
	// The real file of this process parses too.
	procRoot = old
	if m, err := ReadMemory(os.Getpid()); err != nil || m.RSS == 0 || m.PSS == 0 {
		t.Errorf("own smaps_rollup: %+v, %v", m, err)
	}
}

func TestReadVMExits(t *testing.T) {
	old := kvmDebugfs
	kvmDebugfs = t.TempDir()
	t.Cleanup(func() { kvmDebugfs = old })
	dir := filepath.Join(kvmDebugfs, "77-12")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"io_exits": "10\n", "mmio_exits": "3\n", "halt_exits": "7\n", "exits": "20\n", "pf_fixed": "9\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got := ReadVMExits(77)
	want := map[string]uint64{"io": 10, "mmio": 3, "halt": 7}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d, want %d", k, got[k], v)
		}
	}
	if n := len(ReadVMExits(78)); n != 0 {
		t.Errorf("%d causes for a VM that has no KVM statistics", n)
	}
}

// servePod serves a pod's registry like a shim does, in dir/<id>/.
func servePod(t *testing.T, root, id string, guestErr error) {
	t.Helper()
	dir := filepath.Join(root, id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	src := PodSource{
		Processes: func() []Process { return []Process{{"shim", os.Getpid()}} },
		Guest: func(context.Context) (GuestStats, error) {
			return GuestStats{MemTotal: 512 << 20, MemFree: 100 << 20, MemAvailable: 300 << 20, OOMKills: 2}, guestErr
		},
		Accelerator: func() (string, string) { return "tcg", "auto: no /dev/kvm; using TCG emulation" },
	}
	reg := NewRegistry(prometheus.Labels{LabelSandboxID: id, LabelNamespace: "default", LabelPodName: "", LabelPodNamespace: ""}, NewPodCollector(src))
	srv, err := Serve(filepath.Join(dir, SocketName), reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// The monitor's one scrape holds every pod's series, each labelled with
// its sandbox; a pod whose socket does not answer is counted, not fatal.
func TestMonitorAggregates(t *testing.T) {
	root := t.TempDir()
	BootPhase.WithLabelValues("sandbox_start").Observe(1.5)
	AgentRPC.WithLabelValues("Check", "OK").Observe(0.01)
	servePod(t, root, "pod-a", nil)
	servePod(t, root, "pod-b", context.DeadlineExceeded)
	// A stale socket of a shim that died.
	if err := os.MkdirAll(filepath.Join(root, "dead"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "dead", SocketName), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	Monitor{StateRoot: root, Timeout: 2 * time.Second}.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		t.Fatalf("monitor output does not parse: %v\n%s", err, body)
	}
	perPod := func(name string) map[string]int {
		n := map[string]int{}
		for _, m := range mfs[name].GetMetric() {
			n[label(m, LabelSandboxID)]++
		}
		return n
	}
	for _, name := range []string{"kata_go_boot_phase_seconds", "kata_go_agent_rpc_duration_seconds", "kata_go_memory_rss_bytes", "kata_go_accelerator_info", "kata_go_oom_kills_total"} {
		if n := perPod(name); n["pod-a"] == 0 || n["pod-b"] == 0 {
			t.Errorf("%s: series per pod %v, want both pods", name, n)
		}
	}
	// pod-b's guest did not answer: its guest series are left out.
	if n := perPod("kata_go_guest_memory_bytes"); n["pod-a"] != 3 || n["pod-b"] != 0 {
		t.Errorf("guest memory series per pod %v, want 3 for pod-a only", n)
	}
	for _, m := range mfs["kata_go_memory_rss_bytes"].GetMetric() {
		if m.GetGauge().GetValue() <= 0 || label(m, "component") != "shim" || label(m, LabelNamespace) != "default" {
			t.Errorf("rss series %v", m)
		}
	}
	if v := mfs["kata_go_monitor_pods"].GetMetric()[0].GetGauge().GetValue(); v != 2 {
		t.Errorf("monitor_pods %v, want 2", v)
	}
	if v := mfs["kata_go_monitor_scrape_errors"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("monitor_scrape_errors %v, want 1 (the dead socket)", v)
	}
}

func TestMergeRefusesTypeClash(t *testing.T) {
	c := dto.MetricType_COUNTER
	g := dto.MetricType_GAUGE
	name := "x"
	dst := map[string]*dto.MetricFamily{"x": {Name: &name, Type: &c}}
	if err := Merge(dst, map[string]*dto.MetricFamily{"x": {Name: &name, Type: &g}}); err == nil {
		t.Error("a gauge merged into a counter")
	}
}
