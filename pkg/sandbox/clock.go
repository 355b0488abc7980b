package sandbox

import (
	"context"
	"fmt"
	"time"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// The guest's wall clock is the host's: exit times, file times and logs in
// the guest must agree with the host's within clockTolerance. The guest
// boots from the emulated RTC (1 s resolution) and, under TCG, its clock
// drifts; the shim sets it right after the agent answers and then every
// clockResyncEvery, and SyncClock is there for whatever else moves the
// guest in time (a VM resumed or restored from a template).
const (
	// clockSamples readings are taken per sync; the one with the shortest
	// round trip is believed, its uncertainty being half that round trip.
	clockSamples = 3
	// clockTolerance: a guest within this of the host is not stepped.
	clockTolerance = time.Millisecond
	// clockResyncEvery is the period of the resync: three cheap calls. A
	// TCG guest on its TSC drifted under 1 ms per 15 s here (2026-12-02:
	// over a minute, one pod needed one 1.0 ms step, another none), far
	// inside 10 ms; the boot step itself was 1.1-1.5 s (the RTC's second).
	clockResyncEvery = 15 * time.Second
	// maxClockStep is the agent's limit too: no honest correction is larger.
	maxClockStep = 100 * 365 * 24 * time.Hour
)

// ClockSync is what one SyncClock found and did.
type ClockSync struct {
	// Offset is the guest's clock minus the host's before the sync, as
	// measured by the guest's own answer (the guest may lie: the number
	// is only logged and only ever corrects that guest's clock).
	Offset time.Duration
	// RTT is the round trip of the reading believed; Offset is exact to
	// within RTT/2.
	RTT time.Duration
	// Stepped says whether the guest's clock was stepped.
	Stepped bool
}

// SyncClock sets the guest's wall clock to the host's, NTP-style: the host
// brackets a reading of the guest's clock with two readings of its own,
// takes the guest's value as the host's midpoint, and sends the difference
// as a relative step (so the second call's latency does not matter).
func (s *Sandbox) SyncClock(ctx context.Context) (ClockSync, error) {
	ctx, cancel := s.requestCtx(ctx)
	defer cancel()
	var best ClockSync
	for i := range clockSamples {
		t0 := time.Now()
		r, err := s.agent.SyncClock(ctx, &agentapi.SyncClockRequest{})
		rtt := time.Since(t0) // monotonic
		if err != nil {
			return ClockSync{}, fmt.Errorf("read the guest clock: %w", s.explain(err))
		}
		if i == 0 || rtt < best.RTT {
			best = ClockSync{Offset: clockOffset(r.GetGuestUnixNs(), t0.Add(rtt/2)), RTT: rtt}
		}
	}
	if best.Offset > -clockTolerance && best.Offset < clockTolerance {
		return best, nil
	}
	if _, err := s.agent.SyncClock(ctx, &agentapi.SyncClockRequest{StepNs: int64(-best.Offset)}); err != nil {
		return best, fmt.Errorf("step the guest clock by %s: %w", -best.Offset, s.explain(err))
	}
	best.Stepped = true
	return best, nil
}

// clockOffset is guest − host for a guest reading taken at host time mid,
// bounded so that no value the guest sends overflows or asks for a step
// beyond maxClockStep.
func clockOffset(guestNs int64, mid time.Time) time.Duration {
	const maxNs = int64(1) << 62 // year 2116; keeps the subtraction exact
	guestNs = min(max(guestNs, 0), maxNs)
	off := time.Duration(guestNs - mid.UnixNano())
	return min(max(off, -maxClockStep), maxClockStep)
}

// startClock sets the guest's clock once, before any container runs, then
// keeps it set until the sandbox dies or stops.
func (s *Sandbox) startClock(ctx context.Context) error {
	cs, err := s.SyncClock(ctx)
	if err != nil {
		return err
	}
	s.log.Info("guest clock set", "offset", cs.Offset, "rtt", cs.RTT, "stepped", cs.Stepped)
	go s.keepClock(clockResyncEvery)
	return nil
}

// keepClock resyncs every period until the sandbox is dead (Stop closes
// the agent connection, which kills it too).
func (s *Sandbox) keepClock(period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	failures := 0
	for {
		select {
		case <-s.dead:
			return
		case <-t.C:
		}
		cs, err := s.SyncClock(context.Background())
		switch {
		case err != nil:
			if failures++; failures <= 3 {
				s.log.Warn("resync the guest clock", "err", err)
			}
		case cs.Stepped:
			failures = 0
			s.log.Info("guest clock stepped", "offset", cs.Offset, "rtt", cs.RTT)
		default:
			failures = 0
		}
	}
}
