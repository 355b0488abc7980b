package agentclient

import (
	"bufio"
	"context"
	"net"
	"path/filepath"
	"strings"
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
		_, err := c.Write([]byte(channel.SerialReady))
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Address{Transport: Serial, Path: sock})
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
		_, err = c.Write([]byte("OK 1073741824\n"))
		return err == nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, Address{Transport: HybridVsock, Path: sock, Port: 1024})
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
	_, err := Dial(ctx, Address{Transport: Serial, Path: sock})
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
	if _, err := Dial(ctx, Address{Transport: Serial, Path: sock}); err == nil || !strings.Contains(err.Error(), "unexpected line") {
		t.Fatalf("dial: %v", err)
	}
}

func TestUnknownTransport(t *testing.T) {
	if _, err := Dial(context.Background(), Address{Transport: "tcp"}); err == nil {
		t.Fatal("unknown transport accepted")
	}
}
