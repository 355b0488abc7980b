package shimv2

import (
	"errors"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestDeleteRefusesRunningTask(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	// runc's shim refuses it with an unclassed error (codes.Unknown).
	if _, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c"}); status.Code(err) != codes.Unknown || !errors.Is(errdefs.FromGRPC(err), errdefs.ErrUnknown) {
		t.Fatalf("delete of a running task: %v, want Unknown as runc", err)
	}
}

func TestDeleteAfterExitStopsVMAndShutdownEndsShim(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "true")
	h.start("c", "")
	h.wait("c", "")
	r, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c"})
	if err != nil || r.ExitStatus != 0 {
		t.Fatalf("delete: %+v %v", r, err)
	}
	if ev := h.event(topicDelete).(*eventstypes.TaskDelete); ev.ContainerID != "c" {
		t.Fatalf("TaskDelete %+v", ev)
	}
	if !h.env.VM.Stopped() {
		t.Fatal("VM still running after its last task was deleted")
	}
	if _, err := h.s.Shutdown(h.ctx, &taskAPI.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.sd.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("shim did not shut down with no task left")
	}
}

func TestShutdownWaitsForPodTasks(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	if _, err := h.s.Shutdown(h.ctx, &taskAPI.ShutdownRequest{}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.sd.Done():
		t.Fatal("shim shut down while it still had a task")
	default:
	}
}

func TestDeleteCreatedTaskNeverStarted(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	if _, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c"}); err != nil {
		t.Fatalf("delete of a created task: %v", err)
	}
	if _, err := h.s.State(h.ctx, &taskAPI.StateRequest{ID: "c"}); !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		t.Fatalf("state after delete: %v", err)
	}
}
