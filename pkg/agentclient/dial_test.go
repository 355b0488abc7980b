package agentclient

import (
	"bufio"
	"context"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"go.uber.org/goleak"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// checkOnly answers Check; the rest of the API is not needed here.
type checkOnly struct{ agentapi.AgentService }

func (checkOnly) Check(context.Context, *agentapi.CheckRequest) (*agentapi.CheckResponse, error) {
	return &agentapi.CheckResponse{Version: "test", AgentStartUptimeNs: 42}, nil
}

// serveAgent serves Check on each accepted conn after handshake runs.
func serveAgent(t *testing.T, l net.Listener, handshake func(net.Conn) bool) {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentapi.RegisterAgentService(srv, checkOnly{})
	hl := &handshakeListener{Listener: l, handshake: handshake}
	go func() { _ = srv.Serve(context.Background(), hl) }()
	t.Cleanup(func() { srv.Close() })
}

type handshakeListener struct {
	net.Listener
	handshake func(net.Conn) bool
}

func (h *handshakeListener) Accept() (net.Conn, error) {
	for {
		c, err := h.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if h.handshake(c) {
			return c, nil
		}
		c.Close()
	}
}

func TestSerialWaitsForReadyLine(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveAgent(t, l, func(c net.Conn) bool {
		time.Sleep(20 * time.Millisecond) // the guest is still booting
		return channel.Accept(c, testSecret, testNonces.Next()) == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Address{Transport: Serial, Path: sock, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.CheckResponse().AgentStartUptimeNs != 42 {
		t.Fatalf("check %+v", c.CheckResponse())
	}
}

func TestHybridVsockHandshake(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "hv.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	serveAgent(t, l, func(c net.Conn) bool {
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "CONNECT 1024\n" {
			return false
		}
		if _, err = c.Write([]byte("OK 1073741824\n")); err != nil {
			return false
		}
		return channel.Accept(c, testSecret, testNonces.Next()) == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Address{Transport: HybridVsock, Path: sock, Port: 1024, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}

// With nothing listening the dial gives up at the deadline, naming the address.
func TestDialDeadline(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, Address{Transport: Serial, Path: sock, Secret: testSecret})
	if err == nil || !strings.Contains(err.Error(), sock) {
		t.Fatalf("dial: %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("dial took %s past a 100ms deadline", time.Since(start))
	}
}

func TestSerialRejectsWrongGreeting(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("login: \n"))
			c.Close()
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, Address{Transport: Serial, Path: sock, Secret: testSecret}); err == nil || !strings.Contains(err.Error(), "unexpected line") {
		t.Fatalf("dial: %v", err)
	}
}

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	testNonces = channel.NewNonces(testSecret, func() int64 { return time.Now().UnixNano() })
)

// An agent holding another pod's secret (or a host process posing as the
// agent's peer with a guessed one) gets no further than the handshake.
func TestWrongSecretRefused(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var attempts atomic.Int32
	serveAgent(t, l, func(c net.Conn) bool {
		attempts.Add(1)
		_ = c.SetDeadline(time.Now().Add(time.Second))
		return channel.Accept(c, testSecret, testNonces.Next()) == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	other := []byte("fedcba9876543210fedcba9876543210")
	_, err = Dial(ctx, Address{Transport: Serial, Path: sock, Secret: other})
	if err == nil || !strings.Contains(err.Error(), "refused the proof") {
		t.Fatalf("dial with the wrong secret: %v", err)
	}
	if attempts.Load() == 0 {
		t.Fatal("the agent never saw a handshake")
	}
}

// A proof recorded from one connection is worthless on the next: the
// nonce changes.
func TestReplayedProofRefused(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	done := make(chan error, 1)
	go func() { done <- channel.Accept(a, testSecret, testNonces.Next()) }()
	if _, err := channel.ReadLine(b); err != nil {
		t.Fatal(err)
	}
	old := make([]byte, 32) // a nonce from some earlier connection
	if _, err := b.Write([]byte(channel.AuthLine(testSecret, old))); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, channel.ErrAuth) {
		t.Fatalf("replayed proof: %v", err)
	}
}

func TestDialNeedsSecret(t *testing.T) {
	_, err := Dial(context.Background(), Address{Transport: Serial, Path: "/nonexistent"})
	if err == nil || !strings.Contains(err.Error(), "secret") {
		t.Fatalf("dial without a secret: %v", err)
	}
}

func TestUnknownTransport(t *testing.T) {
	if _, err := Dial(context.Background(), Address{Transport: "tcp"}); err == nil {
		t.Fatal("unknown transport accepted")
	}
}
