package shimv2

import (
	"testing"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/typeurl/v2"

	"github.com/kata-go/kata-go/internal/agent"
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
	// The agent's figures (its own conversion of fixed cgroup figures, see
	// internal/agent's host edges), and no OOM kill: the agent never
	// reports one in stats (OOM kills come as events and with the exit).
	if m.CPU == nil || m.Memory == nil || m.Pids == nil ||
		m.CPU.UsageUsec != agent.HostStatsCPUNs/1000 || m.Memory.Usage != agent.HostStatsMemoryBytes || m.Pids.Current != 1 ||
		(m.MemoryEvents != nil && m.MemoryEvents.OomKill != 0) {
		t.Fatalf("metrics %+v", m)
	}
}
