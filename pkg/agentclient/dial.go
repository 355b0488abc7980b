// Package agentclient dials the guest agent and keeps one ttrpc connection
// to it for the life of the sandbox.
package agentclient

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

// Transport names how to reach the agent.
type Transport string

const (
	Serial      Transport = "serial"
	Vsock       Transport = "vsock"
	HybridVsock Transport = "hybrid-vsock"
)

// Address is the agent's endpoint.
type Address struct {
	Transport Transport
	Path      string // unix socket (serial, hybrid vsock)
	CID       uint32
	Port      uint32
	// Secret is the pod's agent-channel secret: every connection proves
	// it holds it before the agent serves a request (channel package).
	Secret []byte
}

func (a Address) String() string {
	switch a.Transport {
	case Vsock:
		return fmt.Sprintf("vsock://%d:%d", a.CID, a.Port)
	case HybridVsock:
		return fmt.Sprintf("hvsock://%s:%d", a.Path, a.Port)
	}
	return "serial://" + a.Path
}

// dialer opens one raw connection to the agent, ready for ttrpc.
type dialer func(ctx context.Context, a Address) (net.Conn, error)

func dialerFor(t Transport) (dialer, error) {
	switch t {
	case Serial:
		return dialSerial, nil
	case Vsock:
		return dialVsock, nil
	case HybridVsock:
		return dialHybridVsock, nil
	}
	return nil, fmt.Errorf("unknown agent transport %q", t)
}

// dialSerial connects to QEMU's chardev socket. The agent speaks first (its
// ready line, see authenticate): QEMU queues nothing for a port the guest
// has not opened, so the host must not.
func dialSerial(ctx context.Context, a Address) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", a.Path)
}

func dialVsock(ctx context.Context, a Address) (net.Conn, error) {
	return vsock.Dial(a.CID, a.Port, nil)
}

// authenticate runs the channel handshake on a fresh connection: the agent
// serves nothing until the host proves it holds the pod's secret.
func authenticate(ctx context.Context, conn net.Conn, secret []byte) error {
	if dl, has := ctx.Deadline(); has {
		_ = conn.SetDeadline(dl)
		defer conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	return channel.Connect(conn, secret)
}

// dialHybridVsock speaks Firecracker's vsock-over-unix handshake.
func dialHybridVsock(ctx context.Context, a Address) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", a.Path)
	if err != nil {
		return nil, err
	}
	if _, err := fmt.Fprintf(conn, "CONNECT %d\n", a.Port); err != nil {
		conn.Close()
		return nil, err
	}
	if err := expectLine(ctx, conn, func(l string) bool { return strings.HasPrefix(l, "OK") }); err != nil {
		conn.Close()
		return nil, fmt.Errorf("hybrid vsock handshake: %w", err)
	}
	return conn, nil
}

// expectLine reads one line (nothing after it is consumed: it belongs to
// the handshake and then ttrpc) and checks it.
func expectLine(ctx context.Context, conn net.Conn, ok func(string) bool) error {
	if dl, has := ctx.Deadline(); has {
		_ = conn.SetReadDeadline(dl)
		defer conn.SetReadDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := channel.ReadLine(conn)
	if err != nil {
		return err
	}
	if !ok(line) {
		return fmt.Errorf("unexpected line %q", line)
	}
	return nil
}
