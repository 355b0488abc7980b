package shimv2

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-go/kata-go/pkg/metrics"
	"github.com/kata-go/kata-go/pkg/sandbox"
)

func (h *harness) stateDir(id string) string {
	h.t.Helper()
	dir, err := sandbox.FindStateDir(filepath.Join(h.dir, "state"), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return dir
}

// With debug_console off (the default) the shim refuses a debug shell and
// says how to allow it.
func TestDebugShellRefusedByDefault(t *testing.T) {
	h := newHarness(t, runs)
	defer h.close()
	h.create("p1", "sleep")
	_, err := DialDebugShell(h.stateDir("p1"), 24, 80)
	if err == nil || err.Error() != ErrDebugConsoleDisabled.Error() {
		t.Fatalf("got %v, want %v", err, ErrDebugConsoleDisabled)
	}
}

// With debug_console on, an agent that refuses (one not booted with the
// host's flag) is the operator's answer too: the shim adds no way around.
func TestDebugShellAgentRefusal(t *testing.T) {
	h := newHarness(t, runs, withConfig("[agent]\ndebug_console = true\n"))
	defer h.close()
	h.create("p1", "sleep")
	_, err := DialDebugShell(h.stateDir("p1"), 24, 80)
	if err == nil || !strings.Contains(err.Error(), "the agent did not start one") || !strings.Contains(err.Error(), "kata_go.debug_console=1") {
		t.Fatalf("got %v, want the agent's refusal", err)
	}
}

// The pod's metrics socket answers with its sandbox's series.
func TestPodMetricsServed(t *testing.T) {
	h := newHarness(t, runs)
	defer h.close()
	h.create("p1", "sleep")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	mfs, err := metrics.Scrape(ctx, filepath.Join(h.stateDir("p1"), metrics.SocketName))
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, name := range []string{"kata_go_memory_rss_bytes", "kata_go_guest_memory_bytes", "kata_go_boot_phase_seconds"} {
		for _, m := range mfs[name].GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == metrics.LabelSandboxID && l.GetValue() == "p1" {
					found[name] = true
				}
			}
		}
		if !found[name] {
			t.Errorf("no %s series for sandbox p1", name)
		}
	}
}
