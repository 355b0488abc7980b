package sandbox

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/containerd/errdefs"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// The guest is hostile: a container with root, or the agent itself, may
// answer anything. Every answer the host acts on is checked here against
// what an honest agent can say, and every call made for a containerd
// request is bounded in time.

// ErrBadAnswer classes an agent answer no honest agent gives (a length
// beyond the buffer, a pid that cannot exist, too much data). It is an
// errdefs.ErrInternal: the request failed inside the runtime.
var ErrBadAnswer = fmt.Errorf("impossible agent answer: %w", errdefs.ErrInternal)

func badAnswer(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadAnswer, fmt.Sprintf(format, args...))
}

// Limits of what a guest can truthfully report.
const (
	// maxGuestPid is Linux's PID_MAX_LIMIT on 64-bit: no pid is larger.
	maxGuestPid = 1 << 22
	// maxExitStatus: a shell's status is a code (0-255) or 128+signal.
	maxExitStatus = 255
	// maxListedPids bounds a process listing handed to containerd, which
	// makes a structure per entry: a 4 MiB answer must not become tens of
	// MiB there.
	maxListedPids = 1 << 16
)

// Defaults when a sandbox's config has no timeouts (config.Default sets
// them; a Config built by hand may not).
const (
	defaultCreateTimeout  = 30 * time.Second
	defaultRequestTimeout = 10 * time.Second
)

func (s *Sandbox) createTimeout() time.Duration {
	if d := s.cfg.Agent.CreateTimeout.Duration; d > 0 {
		return d
	}
	return defaultCreateTimeout
}

func (s *Sandbox) requestTimeout() time.Duration {
	if d := s.cfg.Agent.RequestTimeout.Duration; d > 0 {
		return d
	}
	return defaultRequestTimeout
}

// createCtx bounds a call that sets up a process (create, start, exec):
// an agent that never answers fails the request with DeadlineExceeded.
func (s *Sandbox) createCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.createTimeout())
}

// requestCtx bounds every other call made for a containerd request.
func (s *Sandbox) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.requestTimeout())
}

// checkPid accepts a pid the agent says a process it started has. The
// agent is PID 1 in the guest, so no container process is.
func checkPid(what string, pid uint32) error {
	if pid < 2 || pid > maxGuestPid {
		return badAnswer("%s: pid %d (a guest process has 2..%d)", what, pid, maxGuestPid)
	}
	return nil
}

// checkPids keeps the possible pids of a listing, each once, at most
// maxListedPids of them; dropped says how many were not.
func checkPids(pids []uint32) (kept []uint32, dropped int) {
	seen := make(map[uint32]bool, min(len(pids), maxListedPids))
	for _, pid := range pids {
		if pid == 0 || pid > maxGuestPid || seen[pid] || len(kept) == maxListedPids {
			dropped++
			continue
		}
		seen[pid] = true
		kept = append(kept, pid)
	}
	return kept, dropped
}

// exitStatus is the status containerd gets from a WaitProcess answer. A
// status outside 0-255 (none a shell reports; a negative int32 would
// become a huge uint32) is reported as VMDiedStatus, the status of a
// process whose fate is unknown. The exit time is the host's: learned is
// when the host got the answer (see exitTime). The guest's exited_at is
// not used: the guest's clock is set from an emulated RTC with 1 s
// resolution and drifts, so an exit it dates can precede the client's
// Start, and a hostile agent may date it anywhere.
func exitStatus(r *agentapi.WaitProcessResponse, learned, started time.Time) (st ExitStatus, lie error) {
	st = ExitStatus{Code: VMDiedStatus, At: exitTime(learned, started), OOMKilled: r.GetOomKilled()}
	if code := r.GetStatus(); code >= 0 && code <= maxExitStatus {
		st.Code = uint32(code)
	} else {
		lie = badAnswer("exit status %d (a status is 0..%d)", code, maxExitStatus)
	}
	return st, lie
}

// exitTime dates an exit the host learned of at learned, never before the
// process started (or was created, if it never started): a wall clock
// stepped back between the two must not date an exit before its start.
// Wall-clock readings are compared, as containerd's clients compare them.
func exitTime(learned, started time.Time) time.Time {
	learned, started = learned.Round(0), started.Round(0)
	if learned.Before(started) {
		return started
	}
	return learned
}

// Clamps for stats counters: consumers do arithmetic on them (CRI turns
// microseconds into nanoseconds, kubelet converts bytes to int64), so no
// value the guest sends may overflow there.
const (
	maxStatCount = math.MaxInt64
	maxStatUsec  = math.MaxInt64 / 1000
)

func clampStat(v, limit uint64) uint64 { return min(v, limit) }

// sanitizeStats copies a stats answer with every counter clamped and the
// pids count bounded by what a guest can have. A missing section stays
// missing (nil-safe getters: a nil answer is an empty one).
func sanitizeStats(r *agentapi.StatsContainerResponse) *agentapi.StatsContainerResponse {
	out := &agentapi.StatsContainerResponse{}
	if c := r.GetCpu(); c != nil {
		u := func(v uint64) uint64 { return clampStat(v, maxStatUsec) }
		out.Cpu = &agentapi.CpuStats{
			UsageUsec: u(c.GetUsageUsec()), UserUsec: u(c.GetUserUsec()), SystemUsec: u(c.GetSystemUsec()),
			NrPeriods: clampStat(c.GetNrPeriods(), maxStatCount), NrThrottled: clampStat(c.GetNrThrottled(), maxStatCount),
			ThrottledUsec: u(c.GetThrottledUsec()),
		}
	}
	if m := r.GetMemory(); m != nil {
		b := func(v uint64) uint64 { return clampStat(v, maxStatCount) }
		out.Memory = &agentapi.MemoryStats{
			Usage: b(m.GetUsage()), UsageLimit: b(m.GetUsageLimit()), Anon: b(m.GetAnon()), File: b(m.GetFile()),
			KernelStack: b(m.GetKernelStack()), Slab: b(m.GetSlab()), Sock: b(m.GetSock()), Shmem: b(m.GetShmem()),
			Pgfault: b(m.GetPgfault()), Pgmajfault: b(m.GetPgmajfault()), Oom: b(m.GetOom()), OomKill: b(m.GetOomKill()),
			MaxUsage: b(m.GetMaxUsage()),
		}
	}
	if p := r.GetPids(); p != nil {
		out.Pids = &agentapi.PidsStats{Current: clampStat(p.GetCurrent(), maxGuestPid), Limit: clampStat(p.GetLimit(), maxStatCount)}
	}
	return out
}

// abandonContainer asks the guest to drop a container the host gave up on
// (its create was not answered in time, or answered with a lie). Bounded;
// the agent may ignore it, and the host keeps nothing of the container.
func (s *Sandbox) abandonContainer(id string) {
	select {
	case <-s.dead:
		return
	default:
	}
	ctx, cancel := s.requestCtx(context.Background())
	defer cancel()
	if _, err := s.agent.RemoveContainer(ctx, &agentapi.ContainerRequest{ContainerId: id}); err != nil {
		s.log.Warn("remove abandoned container in guest", "container", id, "err", err)
	}
}

// mustAbandon says whether a failed setup call may have left something in
// the guest: it timed out (the agent may have done it anyway) or its
// answer was refused.
func mustAbandon(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrBadAnswer)
}
