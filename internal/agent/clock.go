package agent

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// wallClock is the guest's CLOCK_REALTIME: the real one in a guest, a
// private offset in tests (which must never step the host's clock).
type wallClock interface {
	now() time.Time
	// step moves the clock by d, atomically relative to its current value.
	step(d time.Duration) error
}

// maxClockStep bounds one step: the host's correction of a guest booted
// from the emulated RTC is at most seconds; a century is a bug.
const maxClockStep = 100 * 365 * 24 * time.Hour

// SyncClock steps the wall clock by the host's correction, then reads it.
// The host computes the correction from an earlier reading bracketed by its
// own clock (NTP-style midpoint), so the time this call takes to arrive
// does not matter.
func (s *service) SyncClock(ctx context.Context, r *agentapi.SyncClockRequest) (*agentapi.SyncClockResponse, error) {
	if d := time.Duration(r.StepNs); d != 0 {
		if d > maxClockStep || d < -maxClockStep {
			return nil, errf(codes.InvalidArgument, "clock step %s out of range (at most %s)", d, maxClockStep)
		}
		if err := s.clock.step(d); err != nil {
			return nil, errf(codes.Internal, "step the clock by %s: %v", d, err)
		}
	}
	return &agentapi.SyncClockResponse{GuestUnixNs: s.clock.now().UnixNano()}, nil
}

// adjSetOffset is Linux's ADJ_SETOFFSET (include/uapi/linux/timex.h).
const adjSetOffset = 0x0100

// guestClock is the kernel's CLOCK_REALTIME.
type guestClock struct{}

var _ wallClock = guestClock{}

func (guestClock) now() time.Time { return time.Now() }

// step uses ADJ_SETOFFSET: the kernel adds the offset to the clock as it is
// at that moment, so no read-modify-write window loses time.
func (guestClock) step(d time.Duration) error {
	tx := setOffset(d)
	if _, err := unix.ClockAdjtime(unix.CLOCK_REALTIME, &tx); err != nil {
		return fmt.Errorf("clock_adjtime: %w", err)
	}
	return nil
}

// setOffset is the adjtimex request that steps the clock by d, in
// microseconds: ADJ_NANO would leave STA_NANO set in the kernel's status,
// changing what every later adjtimex caller in the guest reads. The kernel
// wants the microseconds in [0, 1e6) with the seconds carrying the sign.
func setOffset(d time.Duration) unix.Timex {
	d = d.Round(time.Microsecond)
	sec, usec := int64(d/time.Second), int64(d%time.Second/time.Microsecond)
	if usec < 0 {
		sec, usec = sec-1, usec+1e6
	}
	return unix.Timex{Modes: adjSetOffset, Time: unix.Timeval{Sec: sec, Usec: usec}}
}
