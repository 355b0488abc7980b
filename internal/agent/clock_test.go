package agent

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

func TestSyncClockStepsThenReads(t *testing.T) {
	s := newTestService(t)
	clk := &offsetClock{off: 3 * time.Second}
	s.clock = clk
	ctx := context.Background()
	before := time.Now()
	r, err := s.SyncClock(ctx, &agentapi.SyncClockRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if got := time.Unix(0, r.GuestUnixNs).Sub(before); got < 3*time.Second || got > 4*time.Second {
		t.Fatalf("a reading with no step is %s ahead, want about 3s", got)
	}
	before = time.Now()
	r, err = s.SyncClock(ctx, &agentapi.SyncClockRequest{StepNs: int64(-3 * time.Second)})
	after := time.Now()
	if err != nil {
		t.Fatal(err)
	}
	if g := time.Unix(0, r.GuestUnixNs); g.Before(before) || g.After(after) {
		t.Fatalf("after the step the guest reads %v, outside [%v, %v]", g, before, after)
	}
	for _, bad := range []int64{int64(maxClockStep) + 1, -int64(maxClockStep) - 1} {
		if _, err := s.SyncClock(ctx, &agentapi.SyncClockRequest{StepNs: bad}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("step %d: %v", bad, err)
		}
	}
	clk.failed = context.DeadlineExceeded
	if _, err := s.SyncClock(ctx, &agentapi.SyncClockRequest{StepNs: 1}); status.Code(err) != codes.Internal {
		t.Errorf("a failed step: %v", err)
	}
}

func TestSetOffsetNormalises(t *testing.T) {
	for _, c := range []struct {
		d         time.Duration
		sec, usec int64
	}{
		{1500 * time.Millisecond, 1, 5e5},
		{-1500 * time.Millisecond, -2, 5e5},
		{-time.Microsecond, -1, 999999},
		{-2 * time.Second, -2, 0},
		{1499 * time.Nanosecond, 0, 1},
		{0, 0, 0},
	} {
		tx := setOffset(c.d)
		if tx.Time.Sec != c.sec || tx.Time.Usec != c.usec || tx.Modes != adjSetOffset {
			t.Errorf("%s: sec %d usec %d modes %#x, want %d %d", c.d, tx.Time.Sec, tx.Time.Usec, tx.Modes, c.sec, c.usec)
		}
	}
}
