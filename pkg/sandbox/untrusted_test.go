package sandbox

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

func TestExitStatusRefusesImpossibleAnswers(t *testing.T) {
	started := time.Unix(1000, 0)
	learned := started.Add(time.Minute)
	for _, c := range []struct {
		status int32
		code   uint32
		lie    bool
	}{
		{0, 0, false},
		{255, 255, false},
		{137, 137, false},
		{-1, VMDiedStatus, true},
		{256, VMDiedStatus, true},
		{math.MinInt32, VMDiedStatus, true},
	} {
		st, lie := exitStatus(&agentapi.WaitProcessResponse{Status: c.status}, learned, started)
		if st.Code != c.code || (lie != nil) != c.lie || !st.At.Equal(learned) {
			t.Errorf("status %d: got %+v, lie %v", c.status, st, lie)
		}
		if lie != nil && (!errors.Is(lie, ErrBadAnswer) || !errdefs.IsInternal(lie)) {
			t.Errorf("lie %v is not classed as a bad answer", lie)
		}
	}
	if st, lie := exitStatus(nil, learned, started); lie != nil || st.Code != 0 || !st.At.Equal(learned) {
		t.Errorf("nil answer: %+v %v", st, lie)
	}
}

// The exit time is the host's, whatever the guest dates it: its clock is
// not trusted (set from a 1 s RTC, it drifts; a hostile agent lies).
func TestExitTimeIsTheHosts(t *testing.T) {
	started := time.Unix(1000, 0)
	learned := started.Add(time.Second)
	for _, guest := range []int64{0, -1, 1, started.Add(-500 * time.Millisecond).UnixNano(), started.Add(time.Hour).UnixNano(), math.MaxInt64} {
		st, _ := exitStatus(&agentapi.WaitProcessResponse{ExitedAtUnixNs: guest}, learned, started)
		if !st.At.Equal(learned) {
			t.Errorf("guest time %d: exit dated %v, want the host's %v", guest, st.At, learned)
		}
	}
	// A host clock stepped back between start and exit never dates the
	// exit before the start.
	if at := exitTime(started.Add(-time.Second), started); !at.Equal(started) {
		t.Errorf("exit learned before the start dated %v, want the start %v", at, started)
	}
}

func TestCheckPid(t *testing.T) {
	for pid, ok := range map[uint32]bool{0: false, 1: false, 2: true, 1 << 22: true, 1<<22 + 1: false, math.MaxUint32: false} {
		if err := checkPid("x", pid); (err == nil) != ok {
			t.Errorf("pid %d: %v", pid, err)
		}
	}
}

func TestCheckPidsKeepsPossibleOnesOnce(t *testing.T) {
	kept, dropped := checkPids([]uint32{0, 5, 5, 1 << 23, 6})
	if len(kept) != 2 || kept[0] != 5 || kept[1] != 6 || dropped != 3 {
		t.Fatalf("kept %v dropped %d", kept, dropped)
	}
}

func TestSanitizeStatsClamps(t *testing.T) {
	const m = math.MaxUint64
	r := sanitizeStats(&agentapi.StatsContainerResponse{
		Cpu:    &agentapi.CpuStats{UsageUsec: m, NrPeriods: m},
		Memory: &agentapi.MemoryStats{Usage: 5, MaxUsage: m},
		Pids:   &agentapi.PidsStats{Current: m, Limit: 7},
	})
	if r.Cpu.UsageUsec != math.MaxInt64/1000 || r.Cpu.NrPeriods != math.MaxInt64 || r.Memory.Usage != 5 ||
		r.Memory.MaxUsage != math.MaxInt64 || r.Pids.Current != maxGuestPid || r.Pids.Limit != 7 {
		t.Fatalf("clamped %+v", r)
	}
	if r := sanitizeStats(nil); r.Cpu != nil || r.Memory != nil || r.Pids != nil {
		t.Fatalf("nil answer gave %+v", r)
	}
}
