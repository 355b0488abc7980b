package agent

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

// pipeListener hands out the server ends of in-memory connections, each
// with the peer address the test chose.
type pipeListener struct {
	conns  chan net.Conn
	closed chan struct{}
}

func newPipeListener() *pipeListener {
	return &pipeListener{conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error   { close(l.closed); return nil }
func (l *pipeListener) Addr() net.Addr { return &vsock.Addr{ContextID: 3, Port: channel.VsockPort} }

type peerConn struct {
	net.Conn
	peer net.Addr
}

func (c peerConn) RemoteAddr() net.Addr { return c.peer }

// dial connects a client with the given peer address.
func (l *pipeListener) dial(t *testing.T, peer net.Addr) net.Conn {
	t.Helper()
	server, client := net.Pipe()
	select {
	case l.conns <- peerConn{server, peer}:
	case <-time.After(5 * time.Second):
		t.Fatal("listener did not accept")
	}
	t.Cleanup(func() { client.Close() })
	return client
}

func host() net.Addr { return &vsock.Addr{ContextID: channel.HostCID, Port: 5000} }

// accepted waits for the guarded listener to hand a connection over.
func accepted(t *testing.T, g *guardedListener) (net.Conn, bool) {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		c, err := g.Accept()
		if err == nil {
			got <- c
		}
	}()
	select {
	case c := <-got:
		return c, true
	case <-time.After(300 * time.Millisecond):
		return nil, false
	}
}

func setup(t *testing.T) (*pipeListener, *guardedListener) {
	l := newPipeListener()
	g := guard(l, secret)
	t.Cleanup(func() { g.Close() })
	return l, g
}

// A process inside the guest (CID 1, loopback) or another VM gets nothing:
// not even the ready line.
func TestGuardRefusesNonHostPeers(t *testing.T) {
	l, _ := setup(t)
	for _, cid := range []uint32{1, 3, 1234} {
		c := l.dial(t, &vsock.Addr{ContextID: cid, Port: 5000})
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatalf("CID %d: the agent spoke to a peer that is not the host", cid)
		}
	}
}

func TestGuardRefusesWrongSecret(t *testing.T) {
	l, g := setup(t)
	c := l.dial(t, host())
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	err := channel.Connect(c, []byte("fedcba9876543210fedcba9876543210"))
	if err == nil {
		t.Fatal("handshake with a wrong secret succeeded")
	}
	if _, ok := accepted(t, g); ok {
		t.Fatal("an unproven connection reached the server")
	}
}

// The shim's connection is the only one: a second proven connection is
// refused while it is open, and accepted once it closed.
func TestGuardOneConnectionAtATime(t *testing.T) {
	l, g := setup(t)
	first := l.dial(t, host())
	if err := channel.Connect(first, secret); err != nil {
		t.Fatal(err)
	}
	served, ok := accepted(t, g)
	if !ok {
		t.Fatal("a proven connection was not served")
	}
	second := l.dial(t, host())
	_ = second.SetDeadline(time.Now().Add(2 * time.Second))
	if err := channel.Connect(second, secret); err == nil {
		// The proof passed; the agent must then hang up.
		if _, err := second.Read(make([]byte, 1)); err == nil {
			t.Fatal("a second connection was served beside the first")
		}
	}
	hungUp := make(chan struct{})
	g.whenHostHangsUp(func() { close(hungUp) })
	served.Close()
	select {
	case <-hungUp:
	case <-time.After(2 * time.Second):
		t.Fatal("the end of the host's connection was not noticed")
	}
	g.whenHostHangsUp(nil)
	third := l.dial(t, host())
	if err := channel.Connect(third, secret); err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	if c, ok := accepted(t, g); !ok {
		t.Fatal("a new connection after the first closed was not served")
	} else {
		c.Close()
	}
}

// A peer that connects and never speaks does not hold the door: the shim
// still gets in beside it.
func TestGuardStallerDoesNotBlock(t *testing.T) {
	l, g := setup(t)
	_ = l.dial(t, host()) // never answers the ready line
	c := l.dial(t, host())
	if err := channel.Connect(c, secret); err != nil {
		t.Fatal(err)
	}
	s, ok := accepted(t, g)
	if !ok {
		t.Fatal("a staller blocked the host's connection")
	}
	s.Close()
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	if _, err := readSecret(filepath.Join(dir, "none")); err == nil {
		t.Fatal("missing secret accepted")
	}
	short := filepath.Join(dir, "short")
	if err := os.WriteFile(short, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := readSecret(short); err == nil {
		t.Fatal("short secret accepted")
	}
	ok := filepath.Join(dir, "ok")
	if err := os.WriteFile(ok, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := readSecret(ok); err != nil || string(b) != string(secret) {
		t.Fatalf("read secret: %q %v", b, err)
	}
}

func TestGuardCloseEndsAccept(t *testing.T) {
	_, g := setup(t)
	done := make(chan error, 1)
	go func() { _, err := g.Accept(); done <- err }()
	g.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("accept after close: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("accept did not end at close")
	}
}
