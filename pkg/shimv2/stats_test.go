package shimv2

import (
	"testing"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/typeurl/v2"
)

func TestStatsAreCgroupV2Metrics(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	r, err := h.s.Stats(h.ctx, &taskAPI.StatsRequest{ID: "c"})
	if err != nil {
		t.Fatal(err)
	}
	v, err := typeurl.UnmarshalAny(r.Stats)
	if err != nil {
		t.Fatalf("ctr could not decode the stats: %v", err)
	}
	m, ok := v.(*v2stats.Metrics)
	if !ok {
		t.Fatalf("stats are %T, want cgroup v2 metrics", v)
	}
	if m.CPU.UsageUsec != 1500 || m.Memory.Usage != 4<<20 || m.Pids.Current != 2 || m.MemoryEvents.OomKill != 1 {
		t.Fatalf("metrics %+v", m)
	}
}
