package shimv2

import (
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
)

// The Task verbs answer as containerd's runc shim does in each process
// state (docs/semantics.md); these drive the shim's own service.

func (h *harness) exec(id, execID string, args ...string) error {
	_, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: id, ExecID: execID, Spec: execSpec(args...)})
	return err
}

func (h *harness) kill(id, execID string) error {
	_, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: id, ExecID: execID, Signal: 9})
	return err
}

// An exec id is free again once its exec is deleted: containerd's clients
// reuse ids (one of its tests does exec, wait, delete 100 times with one
// id), and each round gets its own TaskExit.
func TestExecIDReusedAfterDelete(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	const rounds = 100
	for i := range rounds {
		if err := h.exec("c", "same", "true"); err != nil {
			t.Fatalf("round %d: exec: %v", i, err)
		}
		h.start("c", "same")
		if got := h.wait("c", "same"); got != 0 {
			t.Fatalf("round %d: status %d", i, got)
		}
		if _, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "same"}); err != nil {
			t.Fatalf("round %d: delete: %v", i, err)
		}
	}
	eventually(t, "a TaskExit per round", func() bool {
		n := 0
		for _, ev := range h.published(topicExit) {
			if ev.(*eventstypes.TaskExit).ID == "same" {
				n++
			}
		}
		return n == rounds
	})
}

func TestExecIDInUseIsAlreadyExists(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	if err := h.exec("c", "e", "sleep"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "exec with a created exec's id", h.exec("c", "e", "true"), codes.AlreadyExists)
	h.start("c", "e")
	wantCode(t, "exec with a running exec's id", h.exec("c", "e", "true"), codes.AlreadyExists)
	if err := h.kill("c", "e"); err != nil {
		t.Fatal(err)
	}
	h.wait("c", "e")
	// Stopped but not deleted: still in use, as with runc.
	wantCode(t, "exec with a stopped exec's id", h.exec("c", "e", "true"), codes.AlreadyExists)
}

// runc's shim refuses an exec into a paused or stopped container with an
// unclassed error (codes.Unknown); so does kata-go, without asking the
// agent. An exec of a paused container reports paused.
func TestExecIntoPausedOrStoppedRefused(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	if err := h.exec("c", "before", "sleep"); err != nil {
		t.Fatal(err)
	}
	h.start("c", "before")
	if _, err := h.s.Pause(h.ctx, &taskAPI.PauseRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "exec into a paused container", h.exec("c", "e", "true"), codes.Unknown)
	if st, err := h.s.State(h.ctx, &taskAPI.StateRequest{ID: "c", ExecID: "before"}); err != nil || st.Status != tasktypes.Status_PAUSED {
		t.Fatalf("exec of a paused container: %v %v, want PAUSED", st.GetStatus(), err)
	}
	_, err := h.s.Pause(h.ctx, &taskAPI.PauseRequest{ID: "c"})
	wantCode(t, "pause of a paused container", err, codes.Unknown)
	if _, err := h.s.Resume(h.ctx, &taskAPI.ResumeRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	_, err = h.s.Resume(h.ctx, &taskAPI.ResumeRequest{ID: "c"})
	wantCode(t, "resume of a running container", err, codes.Unknown)
	if err := h.exec("c", "e", "true"); err != nil {
		t.Fatalf("exec after resume: %v", err)
	}
	if err := h.kill("c", ""); err != nil {
		t.Fatal(err)
	}
	h.wait("c", "")
	wantCode(t, "exec into a stopped container", h.exec("c", "late", "true"), codes.Unknown)
	// A created exec cannot start once its init is gone.
	_, err = h.s.Start(h.ctx, &taskAPI.StartRequest{ID: "c", ExecID: "e"})
	wantCode(t, "start of an exec of a stopped container", err, codes.FailedPrecondition)
}

func TestKillAnswersByState(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	wantCode(t, "kill of an unknown exec", h.kill("c", "nope"), codes.NotFound)
	if err := h.exec("c", "e", "true"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "kill of a created exec", h.kill("c", "e"), codes.FailedPrecondition)
	h.start("c", "e")
	h.wait("c", "e")
	wantCode(t, "kill of a stopped exec", h.kill("c", "e"), codes.NotFound)
	if _, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "e"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "kill of a deleted exec", h.kill("c", "e"), codes.NotFound)
	if err := h.kill("c", ""); err != nil {
		t.Fatal(err)
	}
	h.wait("c", "")
	wantCode(t, "second kill", h.kill("c", ""), codes.NotFound)
	if _, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "kill of a deleted task", h.kill("c", ""), codes.NotFound)
}

// The VM is where a kata container's runtime state lives: once it is gone,
// a kill is NotFound, as runc's shim answers once `runc delete --force`
// removed the container under it.
func TestKillAfterVMGoneIsNotFound(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	h.killVM()
	wantCode(t, "kill after the VM died", h.kill("c", ""), codes.NotFound)
	if got := h.wait("c", ""); got != 255 {
		t.Fatalf("status %d, want 255", got)
	}
}

func TestStartDeleteUpdateByState(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	_, err := h.s.Pause(h.ctx, &taskAPI.PauseRequest{ID: "c"})
	wantCode(t, "pause of a created task", err, codes.Unknown)
	h.start("c", "")
	_, err = h.s.Start(h.ctx, &taskAPI.StartRequest{ID: "c"})
	wantCode(t, "second start", err, codes.Unknown)
	_, err = h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c"})
	wantCode(t, "delete of a running task", err, codes.Unknown)
	if err := h.exec("c", "e", "sleep"); err != nil {
		t.Fatal(err)
	}
	h.start("c", "e")
	_, err = h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "e"})
	wantCode(t, "delete of a running exec", err, codes.Unknown)
	if err := h.kill("c", ""); err != nil {
		t.Fatal(err)
	}
	h.wait("c", "")
	res := &anypb.Any{Value: []byte(`{}`)}
	_, err = h.s.Update(h.ctx, &taskAPI.UpdateTaskRequest{ID: "c", Resources: res})
	wantCode(t, "update of a stopped task", err, codes.Unknown)
	if r, err := h.s.Pids(h.ctx, &taskAPI.PidsRequest{ID: "c"}); err != nil || len(r.Processes) != 0 {
		t.Fatalf("pids of a stopped task: %v %v, want none", r, err)
	}
	if _, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c"}); err != nil {
		t.Fatal(err)
	}
	_, err = h.s.State(h.ctx, &taskAPI.StateRequest{ID: "c"})
	wantCode(t, "state of a deleted task", err, codes.NotFound)
}

// A created exec may be deleted: it ends with status 0 (runc's answer) and
// its id is free.
func TestDeleteCreatedExec(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	if err := h.exec("c", "e", "true"); err != nil {
		t.Fatal(err)
	}
	r, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "e"})
	if err != nil || r.ExitStatus != 0 {
		t.Fatalf("delete of a created exec: %+v %v", r, err)
	}
	_, err = h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "e"})
	wantCode(t, "second delete", err, codes.NotFound)
	if err := h.exec("c", "e", "true"); err != nil {
		t.Fatalf("id not free after delete: %v", err)
	}
}

// Exit times are the host's: after the Start the client asked for, never
// the guest's date.
func TestExitTimeAfterStart(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "true")
	before := time.Now()
	h.start("c", "")
	h.wait("c", "")
	st, err := h.s.State(h.ctx, &taskAPI.StateRequest{ID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	if at := st.ExitedAt.AsTime(); !at.After(before) || at.After(time.Now()) {
		t.Fatalf("exited at %v, want in (%v, now]", at, before)
	}
}

// With the VM gone, a request the agent should have answered is
// Unavailable, not flattened into FailedPrecondition: a joining container's
// create, a running task's stats.
func TestVMGoneIsUnavailable(t *testing.T) {
	h := newHarness(t, runs)
	h.create("pod", "sleep")
	h.start("pod", "")
	h.s.mu.Lock()
	sb := h.s.sb
	h.s.mu.Unlock()
	h.killVM()
	select {
	case <-sb.Dead():
	case <-time.After(5 * time.Second):
		t.Fatal("the sandbox did not notice its VM's death")
	}
	ann := map[string]string{annContainerType: "container", annSandboxID: "pod"}
	_, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "app", Bundle: h.bundle("app", ann, "true")})
	wantCode(t, "create in a dead pod", err, codes.Unavailable)
	_, err = h.s.Stats(h.ctx, &taskAPI.StatsRequest{ID: "pod"})
	wantCode(t, "stats of a task whose VM died", err, codes.Unavailable)
}
