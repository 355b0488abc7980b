package shimv2

import (
	"context"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/typeurl/v2"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// Stats returns the container's cgroup v2 metrics from inside the guest, in
// the type `ctr task metrics` and the CRI plugin decode.
func (s *service) Stats(ctx context.Context, r *taskAPI.StatsRequest) (*taskAPI.StatsResponse, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	st, err := t.c.Stats(ctx)
	if err != nil {
		return nil, errToGRPC(err)
	}
	data, err := typeurl.MarshalAny(toMetrics(st))
	if err != nil {
		return nil, err
	}
	return &taskAPI.StatsResponse{Stats: typeurl.MarshalProto(data)}, nil
}

func toMetrics(st *agentapi.StatsContainerResponse) *v2stats.Metrics {
	m := &v2stats.Metrics{}
	if c := st.GetCpu(); c != nil {
		m.CPU = &v2stats.CPUStat{
			UsageUsec: c.UsageUsec, UserUsec: c.UserUsec, SystemUsec: c.SystemUsec,
			NrPeriods: c.NrPeriods, NrThrottled: c.NrThrottled, ThrottledUsec: c.ThrottledUsec,
		}
	}
	if mem := st.GetMemory(); mem != nil {
		m.Memory = &v2stats.MemoryStat{
			Usage: mem.Usage, UsageLimit: mem.UsageLimit,
			Anon: mem.Anon, File: mem.File, KernelStack: mem.KernelStack, Slab: mem.Slab,
			Sock: mem.Sock, Shmem: mem.Shmem, Pgfault: mem.Pgfault, Pgmajfault: mem.Pgmajfault,
		}
		m.MemoryEvents = &v2stats.MemoryEvents{Oom: mem.Oom, OomKill: mem.OomKill}
	}
	if p := st.GetPids(); p != nil {
		m.Pids = &v2stats.PidsStat{Current: p.Current, Limit: p.Limit}
	}
	return m
}
