package shimv2

import (
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/kata-go/kata-go/pkg/sandbox/sandboxtest"
)

func (h *harness) status(id string) tasktypes.Status {
	h.t.Helper()
	r, err := h.s.State(h.ctx, &taskAPI.StateRequest{ID: id})
	if err != nil {
		h.t.Fatal(err)
	}
	return r.Status
}

func TestStateFollowsTheTask(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	if s := h.status("c"); s != tasktypes.Status_CREATED {
		t.Fatalf("after create: %v", s)
	}
	h.start("c", "")
	if s := h.status("c"); s != tasktypes.Status_RUNNING {
		t.Fatalf("after start: %v", s)
	}
	if _, err := h.s.Pause(h.ctx, &taskAPI.PauseRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	if s := h.status("c"); s != tasktypes.Status_PAUSED {
		t.Fatalf("after pause: %v", s)
	}
	if _, err := h.s.Resume(h.ctx, &taskAPI.ResumeRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: "c", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	h.wait("c", "")
	r, err := h.s.State(h.ctx, &taskAPI.StateRequest{ID: "c"})
	if err != nil || r.Status != tasktypes.Status_STOPPED || r.ExitStatus != 137 {
		t.Fatalf("after kill: %+v %v", r, err)
	}
}

func TestPidsListsGuestProcesses(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	r, err := h.s.Pids(h.ctx, &taskAPI.PidsRequest{ID: "c"})
	if err != nil || len(r.Processes) != 2 || r.Processes[1].Pid != 7 {
		t.Fatalf("pids: %+v %v", r, err)
	}
	c, err := h.s.Connect(h.ctx, &taskAPI.ConnectRequest{ID: "c"})
	if err != nil || c.ShimPid == 0 || c.TaskPid != sandboxtest.VMMPid {
		t.Fatalf("connect: %+v %v", c, err)
	}
}
