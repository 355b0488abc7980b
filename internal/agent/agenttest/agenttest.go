// Package agenttest serves internal/agent's real request handling over an
// in-memory ttrpc connection, for unit tests of the host (pkg/sandbox,
// pkg/shimv2). Only the edges are fakes: containers are plain host
// processes, guest mounts are checked and recorded, and the guest's wall
// clock is an offset from the host's (internal/agent's hostedges.go).
package agenttest

import (
	"context"
	"net"
	"path"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/internal/agent"
	"github.com/kata-go/kata-go/pkg/agentapi"
)

// Agent is the host's end of the connection: an agent client (with the
// Closed and Close a sandbox's agent has), and the guest's service behind it.
type Agent struct {
	agentapi.AgentService
	// Guest is the service answering: what only the guest's edges see.
	Guest *agent.Service

	tc       *ttrpc.Client
	srv      *ttrpc.Server
	guestEnd net.Conn
	cancel   context.CancelFunc // ends the server's requests
	served   chan struct{}
	closed   chan struct{}
	stop     sync.Once

	// mu guards calls, creates, signals and resizes.
	mu      sync.Mutex
	calls   []string
	creates map[string]*agentapi.CreateContainerRequest
	signals []*agentapi.SignalProcessRequest
	resizes []*agentapi.TtyWinResizeRequest
}

// New starts a service and connects to it; the test's cleanup shuts both
// down and kills every process the service started.
func New(t testing.TB, o agent.Options) *Agent {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	a := &Agent{Guest: agent.NewService(o), served: make(chan struct{}), closed: make(chan struct{}), creates: map[string]*agentapi.CreateContainerRequest{}}
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(a.record))
	if err != nil {
		t.Fatal(err)
	}
	a.srv = srv
	agentapi.RegisterAgentService(srv, a.Guest)
	guestEnd, hostEnd := net.Pipe()
	a.guestEnd = guestEnd
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go func() {
		defer close(a.served)
		_ = srv.Serve(ctx, newOneConn(guestEnd))
	}()
	a.tc = ttrpc.NewClient(hostEnd, ttrpc.WithOnClose(func() { close(a.closed) }))
	a.AgentService = agentapi.NewAgentClient(a.tc)
	t.Cleanup(a.Shutdown)
	return a
}

func (a *Agent) record(ctx context.Context, un ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
	a.note(path.Base(info.FullMethod), un)
	return m(ctx, un)
}

// note records a call and the requests tests look at.
func (a *Agent) note(name string, un ttrpc.Unmarshaler) {
	var (
		create agentapi.CreateContainerRequest
		signal agentapi.SignalProcessRequest
		resize agentapi.TtyWinResizeRequest
	)
	// The request is decoded again by the method: unmarshal is repeatable.
	a.mu.Lock()
	defer a.mu.Unlock()
	a.calls = append(a.calls, name)
	switch {
	case name == "CreateContainer" && un(&create) == nil:
		a.creates[create.ContainerId] = &create
	case name == "SignalProcess" && un(&signal) == nil:
		a.signals = append(a.signals, &signal)
	case name == "TtyWinResize" && un(&resize) == nil:
		a.resizes = append(a.resizes, &resize)
	}
}

// Signals are the SignalProcess requests received, in order.
func (a *Agent) Signals() []*agentapi.SignalProcessRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*agentapi.SignalProcessRequest(nil), a.signals...)
}

// Resizes are the TtyWinResize requests received, in order.
func (a *Agent) Resizes() []*agentapi.TtyWinResizeRequest {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]*agentapi.TtyWinResizeRequest(nil), a.resizes...)
}

// Storages are what the last CreateContainer of cid asked the guest to mount.
func (a *Agent) Storages(cid string) []*agentapi.Storage {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.creates[cid].GetStorages()
}

// Calls lists the RPCs the guest received, in order.
func (a *Agent) Calls() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.calls...)
}

// Closed is closed when the connection is gone.
func (a *Agent) Closed() <-chan struct{} { return a.closed }

// Close hangs up, as the shim does at Stop.
func (a *Agent) Close() error { return a.tc.Close() }

// Die drops the connection from the guest's side, as a VM that dies does.
func (a *Agent) Die() { a.guestEnd.Close() }

// Shutdown ends the connection and the server and kills every process the
// service started.
func (a *Agent) Shutdown() {
	a.stop.Do(func() {
		a.cancel() // long polls (GetOOMEvent, WaitProcess) end
		a.tc.Close()
		a.Guest.Shutdown()
		_ = a.srv.Close()
		a.guestEnd.Close()
		<-a.served
	})
}

// oneConn is a listener that hands out one connection.
type oneConn struct {
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newOneConn(c net.Conn) *oneConn {
	l := &oneConn{conns: make(chan net.Conn, 1), closed: make(chan struct{})}
	l.conns <- c
	return l
}

func (l *oneConn) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *oneConn) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *oneConn) Addr() net.Addr { return pipeAddr{} }

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "agenttest" }

// Spec is the OCI spec the container got in the guest.
func (a *Agent) Spec(cid string) *specs.Spec { return a.Guest.Spec(cid) }

// Paused says whether the container is frozen.
func (a *Agent) Paused(cid string) bool { return a.Guest.Paused(cid) }

// Resources are the container's resources after the last update.
func (a *Agent) Resources(cid string) *specs.LinuxResources { return a.Guest.Resources(cid) }

// OOMKill kills the container's init as the guest kernel's OOM killer does.
func (a *Agent) OOMKill(cid string) bool { return a.Guest.OOMKill(cid) }
