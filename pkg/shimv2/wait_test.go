package shimv2

import (
	"context"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
)

// containerd (ctr run) calls Wait before Start: it must block, not fail.
func TestWaitBeforeStart(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "fail")
	got := make(chan uint32, 1)
	go func() { got <- h.wait("c", "") }()
	select {
	case s := <-got:
		t.Fatalf("Wait returned %d before Start", s)
	case <-time.After(50 * time.Millisecond):
	}
	h.start("c", "")
	if s := <-got; s != 3 {
		t.Fatalf("Wait gave %d, want 3", s)
	}
}

func TestWaitHonoursContext(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	ctx, cancel := context.WithTimeout(h.ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := h.s.Wait(ctx, &taskAPI.WaitRequest{ID: "c"}); err == nil {
		t.Fatal("Wait on a running task returned without an exit")
	}
}
