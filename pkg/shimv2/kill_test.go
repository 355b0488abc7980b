package shimv2

import (
	"testing"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
)

func TestKillRunningReportsSignal(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	if _, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: "c", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	if got := h.wait("c", ""); got != 143 {
		t.Fatalf("status %d after SIGTERM, want 143", got)
	}
	// Signalling an exited process is NotFound, as with runc's shim (CRI's
	// stop takes that as "already gone").
	if _, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: "c", Signal: 9}); !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		t.Fatalf("kill after exit: %v, want NotFound", err)
	}
}

func TestKillAllIsForwarded(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	if _, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: "c", Signal: 9, All: true}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range h.env.Agent.Signals() {
		found = found || (r.ContainerId == "c" && r.ExecId == "" && r.Signal == 9 && r.All)
	}
	if !found {
		t.Fatalf("no SignalProcess with all=true in %v", h.env.Agent.Signals())
	}
}

func TestKillCreatedTaskPublishesExit(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	if _, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: "c", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if ev := h.event(topicExit).(*eventstypes.TaskExit); ev.ExitStatus != 137 {
		t.Fatalf("TaskExit %+v, want status 137", ev)
	}
}
