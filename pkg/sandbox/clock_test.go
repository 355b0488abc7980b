package sandbox

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// clockAgent is a guest whose clock is the host's plus an offset; lie, when
// set, replaces what it reports.
type clockAgent struct {
	Agent // only SyncClock is called
	mu    sync.Mutex
	off   time.Duration
	lie   *int64
	steps []int64
}

func (a *clockAgent) SyncClock(_ context.Context, r *agentapi.SyncClockRequest) (*agentapi.SyncClockResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.StepNs != 0 {
		a.steps = append(a.steps, r.StepNs)
	}
	a.off += time.Duration(r.StepNs)
	if a.lie != nil {
		return &agentapi.SyncClockResponse{GuestUnixNs: *a.lie}, nil
	}
	return &agentapi.SyncClockResponse{GuestUnixNs: time.Now().Add(a.off).UnixNano()}, nil
}

func (a *clockAgent) offset() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.off
}

func clockSandbox(a *clockAgent) *Sandbox {
	return &Sandbox{agent: a, dead: make(chan struct{}), log: slog.New(slog.DiscardHandler)}
}

func TestSyncClockSetsTheGuestToTheHost(t *testing.T) {
	for _, off := range []time.Duration{3 * time.Second, -700 * time.Millisecond, -56 * 365 * 24 * time.Hour} {
		a := &clockAgent{off: off}
		cs, err := clockSandbox(a).SyncClock(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !cs.Stepped || cs.Offset-off > cs.RTT || off-cs.Offset > cs.RTT {
			t.Errorf("guest %s ahead: measured %+v", off, cs)
		}
		if got := a.offset(); got > clockTolerance+cs.RTT || got < -clockTolerance-cs.RTT {
			t.Errorf("guest %s ahead: still %s after the sync", off, got)
		}
	}
	// A guest within tolerance is left alone.
	a := &clockAgent{}
	if cs, err := clockSandbox(a).SyncClock(context.Background()); err != nil || cs.Stepped || len(a.steps) != 0 {
		t.Fatalf("an exact guest: %+v %v, steps %v", cs, err, a.steps)
	}
}

// Whatever the guest reports, the step sent back is bounded and nothing
// overflows.
func TestSyncClockBoundsWhatTheGuestSays(t *testing.T) {
	for _, lie := range []int64{math.MinInt64, math.MaxInt64, -1, 0} {
		a := &clockAgent{lie: &lie}
		if _, err := clockSandbox(a).SyncClock(context.Background()); err != nil {
			t.Fatal(err)
		}
		for _, st := range a.steps {
			if d := time.Duration(st); d > maxClockStep || d < -maxClockStep {
				t.Errorf("guest said %d: step %s", lie, d)
			}
		}
	}
}

// The resync corrects drift and ends with the sandbox.
func TestKeepClockResyncsUntilDead(t *testing.T) {
	a := &clockAgent{}
	s := clockSandbox(a)
	done := make(chan struct{})
	go func() { s.keepClock(5 * time.Millisecond); close(done) }()
	a.mu.Lock()
	a.off = 2 * time.Second // drift
	a.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for a.offset() > 50*time.Millisecond {
		if time.Now().After(deadline) {
			t.Fatalf("drift not corrected: %s", a.offset())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(s.dead)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("keepClock outlived its sandbox")
	}
}
