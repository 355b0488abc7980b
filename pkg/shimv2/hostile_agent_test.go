package shimv2

// The hostile-agent suite: the real shim and sandbox code against an agent
// that lies (see liar in hostile_liar_test.go). The guest is not trusted:
// for every lie the shim must stay up (a panic in any goroutine fails the
// whole binary), publish nothing forged, answer containerd in bounded time
// and tear down clean (goleak checks every goroutine ended).

import (
	"context"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	v2stats "github.com/containerd/cgroups/v3/cgroup2/stats"
	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"
	"github.com/containerd/typeurl/v2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/sandbox"
	"github.com/kata-go/kata-go/pkg/sandbox/sandboxtest"
)

// Short deadlines so an agent that never answers costs a test little.
const (
	hostileCreateTimeout  = 300 * time.Millisecond
	hostileRequestTimeout = 200 * time.Millisecond
	hostileTimeouts       = "[agent]\ncreate_timeout = \"300ms\"\nrequest_timeout = \"200ms\"\n"
	// answerBound is how long any containerd request may take against an
	// agent that never answers: a deadline, bounded clean-up calls after
	// it (a failed create stops its VM, giving DestroySandbox 2 s), and
	// the race detector's slowness.
	answerBound = 5 * time.Second
)

// hostile is a harness whose agent is a liar set up by rig.
func hostile(t *testing.T, script func([]string) sandboxtest.Behavior, rig func(*liar)) (*harness, *liar) {
	t.Helper()
	var l *liar
	h := newHarness(t, script, withConfig(hostileTimeouts), withAgent(func(a *sandboxtest.Agent) sandbox.Agent {
		l = newLiar(a)
		if rig != nil {
			rig(l)
		}
		return l
	}))
	return h, l
}

// killVM ends the VM, as its death would: every process still running
// (the agent never said it exited) ends, so the harness can delete it.
func (h *harness) killVM() {
	if h.env.VM != nil {
		h.env.VM.Kill() // over the real agent, this also drops its connection
	}
	if h.env.Fake != nil {
		h.env.Fake.Die()
	}
}

// timed runs a containerd request and fails the test if it takes longer
// than answerBound; it returns the request's error.
func timed(t *testing.T, what string, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-time.After(answerBound):
		t.Fatalf("%s did not answer within %v", what, answerBound)
		return nil
	}
}

// eventually fails the test if cond is not true within 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// published are the events of topic, in order.
func (h *harness) published(topic string) []any {
	h.pub.mu.Lock()
	defer h.pub.mu.Unlock()
	var out []any
	for _, e := range h.pub.events {
		if e.topic == topic {
			out = append(out, e.ev)
		}
	}
	return out
}

func wantCode(t *testing.T, what string, err error, want codes.Code) {
	t.Helper()
	if status.Code(err) != want {
		t.Fatalf("%s: %v (code %v), want code %v", what, err, status.Code(err), want)
	}
}

// An agent naming containers of other pods, ids that are no ids, and its
// own container again and again gets one TaskOOM out: for its own
// container, once, however the exit path reports the OOM kill too.
func TestHostileOOMEventsOnlyForOwnTasksOnce(t *testing.T) {
	forged := []string{
		"other-pods-container", "", strings.Repeat("x", 10000), "../../c", "c\x00", "C",
		"c", "c", "c", "c",
	}
	var served atomic.Int32
	h, _ := hostile(t, func([]string) sandboxtest.Behavior {
		return sandboxtest.Behavior{Exit: 137, OOM: true}
	}, func(l *liar) {
		l.getOOMEvent = func(ctx context.Context, _ *agentapi.Empty) (*agentapi.OOMEvent, error) {
			if i := int(served.Add(1)) - 1; i < len(forged) {
				return &agentapi.OOMEvent{ContainerId: forged[i]}, nil
			}
			<-ctx.Done()
			return nil, ctx.Err()
		}
	})
	h.create("c", "hog")
	eventually(t, "the OOM poll takes every forged event", func() bool { return int(served.Load()) > len(forged) })
	h.start("c", "")
	h.wait("c", "")
	h.event(topicExit)
	ooms := h.published(topicOOM)
	if len(ooms) != 1 || ooms[0].(*eventstypes.TaskOOM).ContainerID != "c" {
		t.Fatalf("TaskOOM events %v; want exactly one, for c", ooms)
	}
}

// An agent answering the OOM long poll as fast as it can does not make
// the shim spin: the poll is paced.
func TestHostileOOMFloodIsPaced(t *testing.T) {
	var polls atomic.Int64
	h, _ := hostile(t, runs, func(l *liar) {
		l.getOOMEvent = func(ctx context.Context, _ *agentapi.Empty) (*agentapi.OOMEvent, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			id := "forged"
			if polls.Add(1)%2 == 0 {
				id = "c"
			}
			return &agentapi.OOMEvent{ContainerId: id}, nil
		}
	})
	begin := time.Now()
	h.create("c", "sleep")
	time.Sleep(500 * time.Millisecond)
	n, elapsed := polls.Load(), time.Since(begin)
	if most := int64(oomBurst) + int64(elapsed/oomInterval) + 2; n > most {
		t.Fatalf("%d OOM polls in %v; the pace allows %d", n, elapsed, most)
	}
	if ooms := h.published(topicOOM); len(ooms) != 1 {
		t.Fatalf("%d TaskOOM events from a flood; want 1", len(ooms))
	}
}

// WriteStdin answers claiming more than was sent, nothing, or a length
// that would be negative as an int32 fail the stdin stream (the shim
// once sliced its buffer with them and panicked); the process's stdin is
// closed and nothing more is written.
func TestHostileWriteStdinLengths(t *testing.T) {
	for _, c := range []struct {
		name string
		lie  func(n int) uint32
	}{
		{"beyond the buffer", func(n int) uint32 { return uint32(n) + 1 }},
		{"zero", func(int) uint32 { return 0 }},
		{"huge", func(int) uint32 { return math.MaxUint32 }},
		{"negative as int32", func(int) uint32 { return 1 << 31 }},
	} {
		t.Run(c.name, func(t *testing.T) {
			var writes atomic.Int32
			h, _ := hostile(t, runs, func(l *liar) {
				l.writeStdin = func(ctx context.Context, r *agentapi.WriteStreamRequest) (*agentapi.WriteStreamResponse, error) {
					writes.Add(1)
					return &agentapi.WriteStreamResponse{Len: c.lie(len(r.Data))}, nil
				}
			})
			fifo, w := stdinFifo(t)
			defer w.Close()
			if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: h.bundle("c", nil, "sleep"), Stdin: fifo}); err != nil {
				t.Fatal(err)
			}
			h.start("c", "")
			if _, err := w.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			eventually(t, "stdin closed after the lie", func() bool {
				_, closed := h.env.Fake.Stdin("c", "")
				return closed
			})
			_, _ = w.Write([]byte("pong"))
			time.Sleep(20 * time.Millisecond)
			if n := writes.Load(); n != 1 {
				t.Fatalf("%d WriteStdin calls; the stream should have failed at the first lie", n)
			}
			if st := h.status("c"); st != tasktypes.Status_RUNNING {
				t.Fatalf("task %v after the lie; want it running", st)
			}
		})
	}
}

// An honest short write (fewer bytes than sent) is continued, not failed.
func TestHostileWriteStdinShortWritesAreContinued(t *testing.T) {
	h, _ := hostile(t, runs, func(l *liar) {
		l.writeStdin = func(ctx context.Context, r *agentapi.WriteStreamRequest) (*agentapi.WriteStreamResponse, error) {
			one := &agentapi.WriteStreamRequest{ContainerId: r.ContainerId, ExecId: r.ExecId, Data: r.Data[:1]}
			return l.Agent.WriteStdin(ctx, one)
		}
	})
	fifo, w := stdinFifo(t)
	defer w.Close()
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: h.bundle("c", nil, "sleep"), Stdin: fifo}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "")
	if _, err := w.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "every byte written one at a time", func() bool {
		got, _ := h.env.Fake.Stdin("c", "")
		return got == "ping"
	})
}

// A read answered with more data than asked for fails that stream: none
// of its data reaches the host, the other stream and the exit do.
func TestHostileReadStdoutMoreThanAsked(t *testing.T) {
	var reads atomic.Int32
	h, _ := hostile(t, runs, func(l *liar) {
		l.readStdout = func(ctx context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
			if r.ExecId != "e" {
				return l.Agent.ReadStdout(ctx, r)
			}
			reads.Add(1)
			return &agentapi.ReadStreamResponse{Data: make([]byte, int(r.Len)+1)}, nil
		}
	})
	h.create("c", "sleep")
	h.start("c", "")
	log := filepath.Join(t.TempDir(), "out.log")
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec("fail"), Stdout: "file://" + log}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "e")
	if got := h.wait("c", "e"); got != 3 {
		t.Fatalf("exec status %d, want 3", got)
	}
	if b, err := os.ReadFile(log); err != nil || string(b) != "err\n" {
		t.Fatalf("log %q (%v); want only the honest stderr", b, err)
	}
	if n := reads.Load(); n != 1 {
		t.Fatalf("%d stdout reads; the stream should have failed at the first", n)
	}
}

// Exit statuses no shell reports (negative, above 255) are reported as
// VMDiedStatus, never as a huge uint32; exit times before the process was
// created or in the future are replaced by the host's clock.
func TestHostileExitStatusesAndTimes(t *testing.T) {
	type lie struct {
		status int32
		at     int64
		want   uint32
	}
	lies := map[string]lie{
		"neg":    {-1, 0, sandbox.VMDiedStatus},
		"min":    {math.MinInt32, 0, sandbox.VMDiedStatus},
		"max":    {math.MaxInt32, 0, sandbox.VMDiedStatus},
		"256":    {256, 0, sandbox.VMDiedStatus},
		"future": {3, math.MaxInt64, 3},
		"past":   {0, 1, 0},
		"negat":  {7, -5, 7},
	}
	h, _ := hostile(t, runs, func(l *liar) {
		l.waitProcess = func(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.WaitProcessResponse, error) {
			honest, err := l.Agent.WaitProcess(ctx, r)
			lie, ok := lies[r.ExecId]
			if err != nil || !ok {
				return honest, err
			}
			return &agentapi.WaitProcessResponse{Status: lie.status, ExitedAtUnixNs: lie.at}, nil
		}
	})
	h.create("c", "sleep")
	h.start("c", "")
	for id, lie := range lies {
		before := time.Now()
		if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: id, Spec: execSpec("true")}); err != nil {
			t.Fatal(err)
		}
		h.start("c", id)
		if got := h.wait("c", id); got != lie.want {
			t.Errorf("%s: status %d, want %d", id, got, lie.want)
		}
		st, err := h.s.State(h.ctx, &taskAPI.StateRequest{ID: "c", ExecID: id})
		if err != nil {
			t.Fatal(err)
		}
		if at := st.ExitedAt.AsTime(); at.Before(before) || at.After(time.Now()) {
			t.Errorf("%s: exited at %v, outside [%v, now]", id, at, before)
		}
	}
	for _, ev := range h.published(topicExit) {
		if e := ev.(*eventstypes.TaskExit); e.ExitStatus > 255 {
			t.Errorf("TaskExit %+v carries an impossible status", e)
		}
	}
}

// A CreateContainer answer with a pid no guest process has fails the
// create (an internal error), asks the guest to drop the container, and
// publishes nothing.
func TestHostileCreatePids(t *testing.T) {
	for _, pid := range []uint32{0, 1, 1<<22 + 1, math.MaxUint32} {
		t.Run("", func(t *testing.T) {
			h, _ := hostile(t, runs, func(l *liar) {
				l.createContainer = func(ctx context.Context, r *agentapi.CreateContainerRequest) (*agentapi.CreateContainerResponse, error) {
					if _, err := l.Agent.CreateContainer(ctx, r); err != nil {
						return nil, err
					}
					return &agentapi.CreateContainerResponse{Pid: pid}, nil
				}
			})
			_, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: h.bundle("c", nil, "sleep")})
			wantCode(t, "create answered with a bad pid", err, codes.Internal)
			if !strings.Contains(err.Error(), "pid") {
				t.Fatalf("the error does not name the lie: %v", err)
			}
			if !contains(h.env.Fake.Calls(), "RemoveContainer") {
				t.Fatalf("the refused container was not removed in the guest: %v", h.env.Fake.Calls())
			}
			if ev := h.pub.topics(); len(ev) != 0 {
				t.Fatalf("events %v after a refused create", ev)
			}
			if !h.env.VM.Stopped() {
				t.Fatal("the VM of a refused create still runs")
			}
		})
	}
}

// An ExecProcess answer with an impossible pid fails the start and the
// exec is killed in the guest; no TaskExecStarted goes out.
func TestHostileExecPid(t *testing.T) {
	h, _ := hostile(t, runs, func(l *liar) {
		l.execProcess = func(ctx context.Context, r *agentapi.ExecProcessRequest) (*agentapi.ExecProcessResponse, error) {
			if _, err := l.Agent.ExecProcess(ctx, r); err != nil {
				return nil, err
			}
			return &agentapi.ExecProcessResponse{}, nil
		}
	})
	h.create("c", "sleep")
	h.start("c", "")
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec("sleep")}); err != nil {
		t.Fatal(err)
	}
	_, err := h.s.Start(h.ctx, &taskAPI.StartRequest{ID: "c", ExecID: "e"})
	wantCode(t, "exec answered with pid 0", err, codes.Internal)
	if !contains(h.env.Fake.Calls(), "SignalProcess c/e 9 all=false") {
		t.Fatalf("the refused exec was not killed: %v", h.env.Fake.Calls())
	}
	if ev := h.published(topicExecStarted); len(ev) != 0 {
		t.Fatalf("TaskExecStarted %v for a refused exec", ev)
	}
	if got := h.wait("c", "e"); got != 127 {
		t.Fatalf("refused exec status %d, want 127", got)
	}
}

// A process listing keeps possible pids, once each, and is bounded.
func TestHostileListProcesses(t *testing.T) {
	var answer atomic.Pointer[[]uint32]
	h, _ := hostile(t, runs, func(l *liar) {
		l.listProcesses = func(context.Context, *agentapi.ContainerRequest) (*agentapi.ListProcessesResponse, error) {
			if p := answer.Load(); p != nil {
				return &agentapi.ListProcessesResponse{Pids: *p}, nil
			}
			return nil, nil // no answer at all: an empty listing
		}
	})
	h.create("c", "sleep")
	pids := func() []uint32 {
		t.Helper()
		r, err := h.s.Pids(h.ctx, &taskAPI.PidsRequest{ID: "c"})
		if err != nil {
			t.Fatal(err)
		}
		var out []uint32
		for _, p := range r.Processes {
			out = append(out, p.Pid)
		}
		return out
	}
	if got := pids(); len(got) != 0 {
		t.Fatalf("nil answer listed %v", got)
	}
	answer.Store(&[]uint32{0, 7, 7, 1 << 23, math.MaxUint32, 9})
	if got := pids(); len(got) != 2 || got[0] != 7 || got[1] != 9 {
		t.Fatalf("listing %v; want [7 9]", got)
	}
	many := make([]uint32, 200000)
	for i := range many {
		many[i] = uint32(i + 1)
	}
	answer.Store(&many)
	if got := pids(); len(got) != 1<<16 {
		t.Fatalf("listing of %d pids; want it bounded at %d", len(got), 1<<16)
	}
}

// Stats counters are clamped so arithmetic on them cannot overflow; a nil
// answer is an empty one.
func TestHostileStatsCounts(t *testing.T) {
	var nilAnswer atomic.Bool
	h, _ := hostile(t, runs, func(l *liar) {
		l.statsContainer = func(context.Context, *agentapi.ContainerRequest) (*agentapi.StatsContainerResponse, error) {
			if nilAnswer.Load() {
				return nil, nil
			}
			const m = math.MaxUint64
			return &agentapi.StatsContainerResponse{
				Cpu:    &agentapi.CpuStats{UsageUsec: m, UserUsec: m, SystemUsec: m, NrPeriods: m, NrThrottled: m, ThrottledUsec: m},
				Memory: &agentapi.MemoryStats{Usage: m, UsageLimit: m, Anon: m, OomKill: m},
				Pids:   &agentapi.PidsStats{Current: m, Limit: m},
			}, nil
		}
	})
	h.create("c", "sleep")
	metrics := func() *v2stats.Metrics {
		t.Helper()
		r, err := h.s.Stats(h.ctx, &taskAPI.StatsRequest{ID: "c"})
		if err != nil {
			t.Fatal(err)
		}
		v, err := typeurl.UnmarshalAny(r.Stats)
		if err != nil {
			t.Fatal(err)
		}
		return v.(*v2stats.Metrics)
	}
	m := metrics()
	if m.CPU.UsageUsec > math.MaxInt64/1000 || m.CPU.ThrottledUsec > math.MaxInt64/1000 {
		t.Fatalf("cpu usec %d would overflow as nanoseconds", m.CPU.UsageUsec)
	}
	if m.Memory.Usage > math.MaxInt64 || m.MemoryEvents.OomKill > math.MaxInt64 || m.Pids.Limit > math.MaxInt64 {
		t.Fatalf("memory %+v would overflow an int64", m.Memory)
	}
	if m.Pids.Current > 1<<22 {
		t.Fatalf("%d pids: more than a guest can have", m.Pids.Current)
	}
	nilAnswer.Store(true)
	if m := metrics(); m.CPU != nil || m.Memory != nil || m.Pids != nil {
		t.Fatalf("nil answer gave %+v", m)
	}
}

// Endless output is streamed to the host, never held: host memory stays
// flat however much the agent sends. An exit the agent reports while it
// keeps streaming is reported within request_timeout, and the stream is
// cut.
func TestHostileEndlessOutput(t *testing.T) {
	chunk := make([]byte, 1<<20)
	var chunks atomic.Int64
	h, _ := hostile(t, runs, func(l *liar) {
		l.readStdout = func(ctx context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			chunks.Add(1)
			return &agentapi.ReadStreamResponse{Data: chunk[:r.Len]}, nil
		}
	})
	b := h.bundle("c", nil, "sleep")
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: b, Stdout: "file:///dev/null"}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "")
	eventually(t, "output flows", func() bool { return chunks.Load() >= 32 })
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	base, from := heap(), chunks.Load()
	eventually(t, "256 MiB more output", func() bool { return chunks.Load() >= from+256 })
	if grown := int64(heap()) - int64(base); grown > 32<<20 {
		t.Fatalf("host heap grew by %d MiB while 256 MiB of output passed", grown>>20)
	}
	var got uint32
	if err := timed(t, "kill and exit under endless output", func() error {
		if _, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: "c", Signal: 9}); err != nil {
			return err
		}
		got = h.wait("c", "")
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != 137 {
		t.Fatalf("status %d, want 137", got)
	}
	n := chunks.Load()
	time.Sleep(50 * time.Millisecond)
	if chunks.Load() > n+1 {
		t.Fatal("output is still pulled after the exit was reported")
	}
}

// An agent that stops answering fails each containerd request with
// DeadlineExceeded in bounded time, for every request that calls it.
func TestHostileAgentNeverAnswersCreate(t *testing.T) {
	h, l := hostile(t, runs, nil)
	l.hangs(true, "CreateContainer", "RemoveContainer", "DestroySandbox")
	err := timed(t, "create", func() error {
		_, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: h.bundle("c", nil, "sleep")})
		return err
	})
	wantCode(t, "create", err, codes.DeadlineExceeded)
	if ev := h.pub.topics(); len(ev) != 0 {
		t.Fatalf("events %v after a create that timed out", ev)
	}
	if !h.env.VM.Stopped() {
		t.Fatal("the VM of a failed create still runs")
	}
	eventually(t, "no call left waiting", func() bool { return l.stalled.Load() == 0 })
}

func TestHostileAgentNeverAnswersStart(t *testing.T) {
	h, l := hostile(t, runs, nil)
	h.create("c", "sleep")
	l.hangs(true, "StartContainer", "RemoveContainer")
	err := timed(t, "start", func() error {
		_, err := h.s.Start(h.ctx, &taskAPI.StartRequest{ID: "c"})
		return err
	})
	wantCode(t, "start", err, codes.DeadlineExceeded)
	if got := h.wait("c", ""); got != 127 {
		t.Fatalf("status %d of an init whose start timed out, want 127", got)
	}
	if err := timed(t, "delete", func() error {
		_, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if ev := h.published(topicStart); len(ev) != 0 {
		t.Fatalf("TaskStart %v for a start that timed out", ev)
	}
}

func TestHostileAgentNeverAnswersRequests(t *testing.T) {
	h, l := hostile(t, runs, nil)
	t.Cleanup(h.killVM) // the init cannot be killed through a silent agent
	b := h.bundle("c", nil, "sleep")
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: b, Terminal: true}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "")
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec("sleep")}); err != nil {
		t.Fatal(err)
	}
	l.hangs(true, "SignalProcess", "PauseContainer", "ResumeContainer", "UpdateContainer", "StatsContainer",
		"ListProcesses", "TtyWinResize", "ExecProcess", "CloseStdin", "RemoveContainer")
	res := &anypb.Any{Value: []byte(`{"memory":{"limit":67108864}}`)}
	for _, c := range []struct {
		name string
		call func() error
		want codes.Code // zero: DeadlineExceeded
	}{
		{"kill", func() error {
			_, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: "c", Signal: 9})
			return err
		}, 0},
		{"pause", func() error { _, err := h.s.Pause(h.ctx, &taskAPI.PauseRequest{ID: "c"}); return err }, 0},
		// The pause above timed out, so the container is not paused: the
		// state table refuses the resume (as runc's shim, codes.Unknown)
		// before any agent call, so it cannot hang either.
		{"resume", func() error { _, err := h.s.Resume(h.ctx, &taskAPI.ResumeRequest{ID: "c"}); return err }, codes.Unknown},
		{"update", func() error {
			_, err := h.s.Update(h.ctx, &taskAPI.UpdateTaskRequest{ID: "c", Resources: res})
			return err
		}, 0},
		{"stats", func() error { _, err := h.s.Stats(h.ctx, &taskAPI.StatsRequest{ID: "c"}); return err }, 0},
		{"pids", func() error { _, err := h.s.Pids(h.ctx, &taskAPI.PidsRequest{ID: "c"}); return err }, 0},
		{"resize", func() error {
			_, err := h.s.ResizePty(h.ctx, &taskAPI.ResizePtyRequest{ID: "c", Width: 80, Height: 24})
			return err
		}, 0},
		{"exec start", func() error { _, err := h.s.Start(h.ctx, &taskAPI.StartRequest{ID: "c", ExecID: "e"}); return err }, 0},
	} {
		err := timed(t, c.name, c.call)
		want := c.want
		if want == codes.OK {
			want = codes.DeadlineExceeded
		}
		wantCode(t, c.name, err, want)
	}
	if err := timed(t, "close stdin", func() error {
		_, err := h.s.CloseIO(h.ctx, &taskAPI.CloseIORequest{ID: "c", Stdin: true})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	// Every call the agent left unanswered was given up.
	eventually(t, "no call left waiting", func() bool { return l.stalled.Load() == 0 })
	if ev := h.published(topicPaused); len(ev) != 0 {
		t.Fatalf("TaskPaused %v for a pause that timed out", ev)
	}
}

// Deleting a process ends the long polls the host keeps for it, even when
// the agent never answers them and the VM lives on.
func TestHostileLongPollsEndWithTheirProcess(t *testing.T) {
	// Only the named processes' polls hang: the pod's own must not count.
	h, l := hostile(t, runs, func(l *liar) {
		l.waitProcess = func(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.WaitProcessResponse, error) {
			if hung, err := l.stall(ctx, "WaitProcess of "+r.ContainerId+"/"+r.ExecId); hung {
				return nil, err
			}
			return l.Agent.WaitProcess(ctx, r)
		}
		l.readStdout = func(ctx context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
			if hung, err := l.stall(ctx, "reads of "+r.ContainerId); hung {
				return nil, err
			}
			return l.Agent.ReadStdout(ctx, r)
		}
		l.readStderr = func(ctx context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
			if hung, err := l.stall(ctx, "reads of "+r.ContainerId); hung {
				return nil, err
			}
			return l.Agent.ReadStderr(ctx, r)
		}
	})
	h.create("pod", "sleep") // keeps the VM up throughout
	join := map[string]string{annContainerType: "container", annSandboxID: "pod"}

	// A created task whose output the agent never ends: its delete ends
	// the reads.
	l.hangs(true, "reads of created")
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "created", Bundle: h.bundle("created", join, "sleep")}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "both reads of the created task wait", func() bool { return l.stalled.Load() == 2 })
	if err := timed(t, "delete of a created task", func() error {
		_, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "created"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the reads end with the task", func() bool { return l.stalled.Load() == 0 })

	// An exec the agent never reports exited: deleting its container ends
	// its wait.
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "j", Bundle: h.bundle("j", join, "sleep")}); err != nil {
		t.Fatal(err)
	}
	h.start("j", "")
	l.hangs(true, "WaitProcess of j/e")
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "j", ExecID: "e", Spec: execSpec("sleep")}); err != nil {
		t.Fatal(err)
	}
	h.start("j", "e")
	eventually(t, "the exec's wait is held", func() bool { return l.stalled.Load() == 1 })
	if _, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: "j", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	h.wait("j", "")
	if err := timed(t, "delete", func() error {
		_, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "j"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the exec's wait ends with its container", func() bool { return l.stalled.Load() == 0 })
	if h.env.VM.Stopped() {
		t.Fatal("the VM stopped: the test wanted it alive")
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// Answers with no message at all (a fake or a broken transport could give
// them; ttrpc decodes an empty message to zero values) read as empty
// ones: nothing dereferences them.
func TestHostileNilAnswers(t *testing.T) {
	var createNil atomic.Bool
	h, _ := hostile(t, runs, func(l *liar) {
		l.createContainer = func(ctx context.Context, r *agentapi.CreateContainerRequest) (*agentapi.CreateContainerResponse, error) {
			if createNil.Load() {
				return nil, nil
			}
			return l.Agent.CreateContainer(ctx, r)
		}
		l.getOOMEvent = func(ctx context.Context, _ *agentapi.Empty) (*agentapi.OOMEvent, error) {
			return nil, ctx.Err()
		}
		l.readStdout = func(context.Context, *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
			return nil, nil // EOF
		}
		l.waitProcess = func(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.WaitProcessResponse, error) {
			if _, err := l.Agent.WaitProcess(ctx, r); err != nil {
				return nil, err
			}
			return nil, nil // exited 0
		}
		l.execProcess = func(context.Context, *agentapi.ExecProcessRequest) (*agentapi.ExecProcessResponse, error) {
			return nil, nil // pid 0: refused
		}
	})
	// The exec goes first: a stopped container takes no exec (runc's shim
	// refuses it too).
	h.create("c", "sleep")
	h.start("c", "")
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec("true")}); err != nil {
		t.Fatal(err)
	}
	_, err := h.s.Start(h.ctx, &taskAPI.StartRequest{ID: "c", ExecID: "e"})
	wantCode(t, "exec with a nil answer", err, codes.Internal)
	if _, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: "c", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	if got := h.wait("c", ""); got != 0 {
		t.Fatalf("status %d from a nil WaitProcess answer, want 0", got)
	}
	ann := map[string]string{annContainerType: "container", annSandboxID: "c"}
	createNil.Store(true)
	_, err = h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "app", Bundle: h.bundle("app", ann, "true")})
	wantCode(t, "create with a nil answer", err, codes.Internal)
	if ooms := h.published(topicOOM); len(ooms) != 0 {
		t.Fatalf("TaskOOM %v from nil OOM answers", ooms)
	}
}
