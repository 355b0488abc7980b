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
	created := time.Unix(1000, 0)
	now := created.Add(time.Minute)
	for _, c := range []struct {
		status  int32
		at      int64
		code    uint32
		lie     bool
		atIsNow bool
	}{
		{0, created.Add(time.Second).UnixNano(), 0, false, false},
		{255, 0, 255, false, true},
		{137, -1, 137, false, true},
		{-1, 0, VMDiedStatus, true, true},
		{256, 0, VMDiedStatus, true, true},
		{math.MinInt32, math.MaxInt64, VMDiedStatus, true, true},
		{3, created.Add(-time.Nanosecond).UnixNano(), 3, false, true},
		{3, now.Add(time.Nanosecond).UnixNano(), 3, false, true},
	} {
		st, lie := exitStatus(&agentapi.WaitProcessResponse{Status: c.status, ExitedAtUnixNs: c.at}, created, now)
		if st.Code != c.code || (lie != nil) != c.lie || st.At.Equal(now) != c.atIsNow {
			t.Errorf("status %d at %d: got %+v, lie %v", c.status, c.at, st, lie)
		}
		if lie != nil && (!errors.Is(lie, ErrBadAnswer) || !errdefs.IsInternal(lie)) {
			t.Errorf("lie %v is not classed as a bad answer", lie)
		}
	}
	if st, lie := exitStatus(nil, created, now); lie != nil || st.Code != 0 || !st.At.Equal(now) {
		t.Errorf("nil answer: %+v %v", st, lie)
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
