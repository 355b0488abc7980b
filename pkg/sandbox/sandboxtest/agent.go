// Package sandboxtest has the parts a sandbox is built from, for unit tests
// of the sandbox and the shim above it: the real agent over an in-memory
// connection (Deps, via internal/agent/agenttest), a fake VM and a
// recording host-mount layer. The hand-written Agent here (FakeDeps) is
// kept only as the honest core the hostile tests' lying agents bend; it
// refuses what the real agent refuses and reports no OOM kill in stats.
package sandboxtest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// Behavior is what a fake process does once started.
type Behavior struct {
	Stdout, Stderr string
	Exit           int32
	// UntilSignal keeps the process running until SignalProcess.
	UntilSignal bool
	// OOM makes the exit report an OOM kill of the container.
	OOM bool
}

// Agent is an in-memory, scripted agent for the hostile tests.
type Agent struct {
	// Script decides each process's behaviour from its args; nil: exit 0.
	Script func(args []string) Behavior

	// mu guards everything below.
	mu       sync.Mutex
	calls    []string
	procs    map[string]*proc
	paused   map[string]bool
	stdin    map[string][]byte
	resource map[string][]byte
	closed   chan struct{}
	oom      chan string
	storages map[string][]*agentapi.Storage
	specs    map[string]*specs.Spec
	// nextPid is the guest pid of the next container init; the agent is
	// PID 1 in the guest, so containers start above it.
	nextPid uint32
	// clockOffset is the guest wall clock minus the host's.
	clockOffset time.Duration
}

type proc struct {
	b        Behavior
	args     []string
	started  bool
	exited   chan struct{}
	status   int32
	outSent  bool
	errSent  bool
	stdinEOF bool
}

var _ agentapi.AgentService = (*Agent)(nil)

// NewAgent returns a fake agent with no containers.
func NewAgent(script func([]string) Behavior) *Agent {
	return &Agent{
		Script: script, procs: map[string]*proc{}, paused: map[string]bool{},
		stdin: map[string][]byte{}, resource: map[string][]byte{}, storages: map[string][]*agentapi.Storage{}, specs: map[string]*specs.Spec{},
		closed: make(chan struct{}), oom: make(chan string, 8), nextPid: 100,
	}
}

func key(cid, eid string) string { return cid + "/" + eid }

func (a *Agent) record(call string) {
	a.mu.Lock()
	a.calls = append(a.calls, call)
	a.mu.Unlock()
}

// Calls lists the RPCs received, in order.
func (a *Agent) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

// Stdin is what was written to a process's stdin, and whether it was closed.
func (a *Agent) Stdin(cid, eid string) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.procs[key(cid, eid)]
	return string(a.stdin[key(cid, eid)]), p != nil && p.stdinEOF
}

// Resources is the last UpdateContainer payload for cid.
func (a *Agent) Resources(cid string) []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.resource[cid]
}

// Storages are what CreateContainer asked the guest to mount for cid.
func (a *Agent) Storages(cid string) []*agentapi.Storage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.storages[cid]
}

// Spec is the OCI spec the guest got for cid.
func (a *Agent) Spec(cid string) *specs.Spec {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.specs[cid]
}

// Paused reports the container's freezer state.
func (a *Agent) Paused(cid string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.paused[cid]
}

// OOM injects an OOM kill of cid.
func (a *Agent) OOM(cid string) { a.oom <- cid }

// Die drops the connection, as a dead VM would.
func (a *Agent) Die() {
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-a.closed:
	default:
		close(a.closed)
	}
}

func (a *Agent) Closed() <-chan struct{} { return a.closed }
func (a *Agent) Close() error            { a.Die(); return nil }

func (a *Agent) dead() error {
	select {
	case <-a.closed:
		return status.Error(codes.Unavailable, "ttrpc: closed")
	default:
		return nil
	}
}

func (a *Agent) add(cid, eid string, args []string) *proc {
	b := Behavior{}
	if a.Script != nil {
		b = a.Script(args)
	}
	p := &proc{b: b, args: args, exited: make(chan struct{})}
	a.procs[key(cid, eid)] = p
	return p
}

func (a *Agent) get(cid, eid string) (*proc, error) {
	if err := a.dead(); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	p, ok := a.procs[key(cid, eid)]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "process %s/%s not found", cid, eid)
	}
	return p, nil
}

func (a *Agent) start(p *proc) {
	p.started = true
	if !p.b.UntilSignal {
		p.status = p.b.Exit
		close(p.exited)
	}
}

func (a *Agent) Check(context.Context, *agentapi.CheckRequest) (*agentapi.CheckResponse, error) {
	a.record("Check")
	return &agentapi.CheckResponse{Version: "fake"}, a.dead()
}

func (a *Agent) CreateSandbox(context.Context, *agentapi.CreateSandboxRequest) (*agentapi.Empty, error) {
	a.record("CreateSandbox")
	return &agentapi.Empty{}, a.dead()
}

func (a *Agent) DestroySandbox(context.Context, *agentapi.DestroySandboxRequest) (*agentapi.Empty, error) {
	a.record("DestroySandbox")
	return &agentapi.Empty{}, a.dead()
}

func (a *Agent) CreateContainer(_ context.Context, r *agentapi.CreateContainerRequest) (*agentapi.CreateContainerResponse, error) {
	a.record("CreateContainer")
	if err := a.dead(); err != nil {
		return nil, err
	}
	var s specs.Spec
	if err := json.Unmarshal(r.OciSpec, &s); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "spec: %v", err)
	}
	if s.Process == nil || len(s.Process.Args) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no args")
	}
	if s.Process.Args[0] == "/missing" {
		return nil, status.Errorf(codes.FailedPrecondition, "exec: %q: no such file or directory", s.Process.Args[0])
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.procs[key(r.ContainerId, "")]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "container %s exists", r.ContainerId)
	}
	a.add(r.ContainerId, "", s.Process.Args)
	a.storages[r.ContainerId] = r.Storages
	a.specs[r.ContainerId] = &s
	a.nextPid++
	return &agentapi.CreateContainerResponse{Pid: a.nextPid}, nil
}

func (a *Agent) StartContainer(_ context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	a.record("StartContainer")
	p, err := a.get(r.ContainerId, "")
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.start(p)
	a.mu.Unlock()
	return &agentapi.Empty{}, nil
}

func (a *Agent) RemoveContainer(_ context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	a.record("RemoveContainer")
	if err := a.dead(); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for k, p := range a.procs {
		if len(k) > len(r.ContainerId) && k[:len(r.ContainerId)+1] == r.ContainerId+"/" {
			select {
			case <-p.exited:
			default:
				p.status = 137
				close(p.exited)
			}
			delete(a.procs, k)
		}
	}
	return &agentapi.Empty{}, nil
}

func (a *Agent) PauseContainer(_ context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	a.record("PauseContainer")
	a.mu.Lock()
	a.paused[r.ContainerId] = true
	a.mu.Unlock()
	return &agentapi.Empty{}, a.dead()
}

func (a *Agent) ResumeContainer(_ context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	a.record("ResumeContainer")
	a.mu.Lock()
	a.paused[r.ContainerId] = false
	a.mu.Unlock()
	return &agentapi.Empty{}, a.dead()
}

func (a *Agent) UpdateContainer(_ context.Context, r *agentapi.UpdateContainerRequest) (*agentapi.Empty, error) {
	a.record("UpdateContainer")
	a.mu.Lock()
	a.resource[r.ContainerId] = r.Resources
	a.mu.Unlock()
	return &agentapi.Empty{}, a.dead()
}

func (a *Agent) StatsContainer(_ context.Context, r *agentapi.ContainerRequest) (*agentapi.StatsContainerResponse, error) {
	a.record("StatsContainer")
	if _, err := a.get(r.ContainerId, ""); err != nil {
		return nil, err
	}
	return &agentapi.StatsContainerResponse{
		Cpu: &agentapi.CpuStats{UsageUsec: 1500, UserUsec: 1000, SystemUsec: 500},
		// No OOM counts: the real agent never reports them in stats.
		Memory: &agentapi.MemoryStats{Usage: 4 << 20, UsageLimit: 64 << 20, Anon: 1 << 20},
		Pids:   &agentapi.PidsStats{Current: 2, Limit: 100},
	}, nil
}

func (a *Agent) ListProcesses(_ context.Context, r *agentapi.ContainerRequest) (*agentapi.ListProcessesResponse, error) {
	a.record("ListProcesses")
	if _, err := a.get(r.ContainerId, ""); err != nil {
		return nil, err
	}
	return &agentapi.ListProcessesResponse{Pids: []uint32{1, 7}}, nil
}

func (a *Agent) ExecProcess(_ context.Context, r *agentapi.ExecProcessRequest) (*agentapi.ExecProcessResponse, error) {
	a.record("ExecProcess")
	if err := a.dead(); err != nil {
		return nil, err
	}
	var sp specs.Process
	if err := json.Unmarshal(r.Process, &sp); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "process: %v", err)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// Refused as the real agent refuses it (internal/agent's ExecProcess).
	init := a.procs[key(r.ContainerId, "")]
	if init == nil {
		return nil, status.Errorf(codes.NotFound, "container %q not found", r.ContainerId)
	}
	if _, dup := a.procs[key(r.ContainerId, r.ExecId)]; dup {
		return nil, status.Errorf(codes.AlreadyExists, "exec %q already exists in container %q", r.ExecId, r.ContainerId)
	}
	select {
	case <-init.exited:
		return nil, status.Errorf(codes.FailedPrecondition, "container %q is not running", r.ContainerId)
	default:
	}
	if !init.started {
		return nil, status.Errorf(codes.FailedPrecondition, "container %q is not running", r.ContainerId)
	}
	p := a.add(r.ContainerId, r.ExecId, sp.Args)
	a.start(p)
	return &agentapi.ExecProcessResponse{Pid: 42}, nil
}

func (a *Agent) SignalProcess(_ context.Context, r *agentapi.SignalProcessRequest) (*agentapi.Empty, error) {
	a.record(fmt.Sprintf("SignalProcess %s/%s %d all=%v", r.ContainerId, r.ExecId, r.Signal, r.All))
	p, err := a.get(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	select {
	case <-p.exited:
	default:
		p.status = 128 + int32(r.Signal)
		close(p.exited)
	}
	return &agentapi.Empty{}, nil
}

func (a *Agent) WaitProcess(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.WaitProcessResponse, error) {
	p, err := a.get(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
	case <-a.closed:
		return nil, status.Error(codes.Unavailable, "ttrpc: closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return &agentapi.WaitProcessResponse{Status: p.status, ExitedAtUnixNs: time.Now().UnixNano(), OomKilled: p.b.OOM}, nil
}

func (a *Agent) WriteStdin(_ context.Context, r *agentapi.WriteStreamRequest) (*agentapi.WriteStreamResponse, error) {
	if _, err := a.get(r.ContainerId, r.ExecId); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.stdin[key(r.ContainerId, r.ExecId)] = append(a.stdin[key(r.ContainerId, r.ExecId)], r.Data...)
	a.mu.Unlock()
	return &agentapi.WriteStreamResponse{Len: uint32(len(r.Data))}, nil
}

func (a *Agent) CloseStdin(_ context.Context, r *agentapi.ProcessRequest) (*agentapi.Empty, error) {
	a.record("CloseStdin")
	p, err := a.get(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	a.mu.Lock()
	p.stdinEOF = true
	a.mu.Unlock()
	return &agentapi.Empty{}, nil
}

// readStream serves the scripted output once the process started, then
// EOF once it exited, as pipes would.
func (a *Agent) readStream(ctx context.Context, r *agentapi.ReadStreamRequest, stderr bool) (*agentapi.ReadStreamResponse, error) {
	p, err := a.get(r.ContainerId, r.ExecId)
	if err != nil {
		return nil, err
	}
	for {
		a.mu.Lock()
		started := p.started
		if started {
			data, sent := p.b.Stdout, &p.outSent
			if stderr {
				data, sent = p.b.Stderr, &p.errSent
			}
			if !*sent && data != "" {
				*sent = true
				a.mu.Unlock()
				return &agentapi.ReadStreamResponse{Data: []byte(data)}, nil
			}
		}
		a.mu.Unlock()
		if started {
			break
		}
		select {
		case <-p.exited: // killed before start: EOF
			return &agentapi.ReadStreamResponse{}, nil
		case <-a.closed:
			return nil, status.Error(codes.Unavailable, "ttrpc: closed")
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
	select {
	case <-p.exited:
		return &agentapi.ReadStreamResponse{}, nil
	case <-a.closed:
		return nil, status.Error(codes.Unavailable, "ttrpc: closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *Agent) ReadStdout(ctx context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
	return a.readStream(ctx, r, false)
}

func (a *Agent) ReadStderr(ctx context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
	return a.readStream(ctx, r, true)
}

func (a *Agent) TtyWinResize(_ context.Context, r *agentapi.TtyWinResizeRequest) (*agentapi.Empty, error) {
	a.record(fmt.Sprintf("TtyWinResize %dx%d", r.Columns, r.Rows))
	return &agentapi.Empty{}, a.dead()
}

func (a *Agent) GetOOMEvent(ctx context.Context, _ *agentapi.Empty) (*agentapi.OOMEvent, error) {
	select {
	case id := <-a.oom:
		return &agentapi.OOMEvent{ContainerId: id}, nil
	case <-a.closed:
		return nil, status.Error(codes.Unavailable, "ttrpc: closed")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *Agent) UpdateInterface(_ context.Context, r *agentapi.UpdateInterfaceRequest) (*agentapi.Interface, error) {
	return r.Interface, a.dead()
}

func (a *Agent) UpdateRoutes(context.Context, *agentapi.UpdateRoutesRequest) (*agentapi.Empty, error) {
	return &agentapi.Empty{}, a.dead()
}

// SetClockOffset puts the fake guest's wall clock d ahead of the host's.
func (a *Agent) SetClockOffset(d time.Duration) {
	a.mu.Lock()
	a.clockOffset = d
	a.mu.Unlock()
}

// ClockOffset is how far the fake guest's wall clock is ahead of the host's.
func (a *Agent) ClockOffset() time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.clockOffset
}

func (a *Agent) SyncClock(_ context.Context, r *agentapi.SyncClockRequest) (*agentapi.SyncClockResponse, error) {
	a.record("SyncClock")
	if err := a.dead(); err != nil {
		return nil, err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.clockOffset += time.Duration(r.StepNs)
	return &agentapi.SyncClockResponse{GuestUnixNs: time.Now().Add(a.clockOffset).UnixNano()}, nil
}

func (a *Agent) ReseedRandom(context.Context, *agentapi.ReseedRandomRequest) (*agentapi.Empty, error) {
	a.record("ReseedRandom")
	if err := a.dead(); err != nil {
		return nil, err
	}
	return &agentapi.Empty{}, nil
}

func (a *Agent) PrepareTemplate(context.Context, *agentapi.Empty) (*agentapi.Empty, error) {
	a.record("PrepareTemplate")
	return &agentapi.Empty{}, a.dead()
}
