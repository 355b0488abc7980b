package shimv2

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

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
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec("sleep")}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "e")
	// The guest's pids (the agent's host processes here): the init and
	// the exec, both running sleep.
	r, err := h.s.Pids(h.ctx, &taskAPI.PidsRequest{ID: "c"})
	if err != nil || len(r.Processes) != 2 || r.Processes[0].Pid == r.Processes[1].Pid {
		t.Fatalf("pids: %+v %v, want the init's and the exec's", r, err)
	}
	for _, p := range r.Processes {
		// A process in the middle of its execve shows an empty cmdline.
		var cmd []byte
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			if cmd, _ = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p.Pid)); strings.Contains(string(cmd), "sleep") {
				break
			}
		}
		if !strings.Contains(string(cmd), "sleep") {
			t.Errorf("pid %d runs %q, not sleep", p.Pid, cmd)
		}
	}
	c, err := h.s.Connect(h.ctx, &taskAPI.ConnectRequest{ID: "c"})
	if err != nil || c.ShimPid == 0 || c.TaskPid != sandboxtest.VMMPid {
		t.Fatalf("connect: %+v %v", c, err)
	}
}
