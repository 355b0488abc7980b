// Package agentclient dials the guest agent and keeps one ttrpc connection
// to it for the life of the sandbox.
package agentclient

import (
	"context"
	"errors"
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

// dialSerial connects to QEMU's chardev socket and waits for the agent's
// ready line: QEMU queues nothing for a port the guest has not opened, so
// the host must not speak first.
func dialSerial(ctx context.Context, a Address) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", a.Path)
	if err != nil {
		return nil, err
	}
	if err := expectLine(ctx, conn, func(l string) bool { return l+"\n" == channel.SerialReady }); err != nil {
		conn.Close()
		return nil, fmt.Errorf("wait for agent ready line: %w", err)
	}
	return conn, nil
}

func dialVsock(ctx context.Context, a Address) (net.Conn, error) {
	return vsock.Dial(a.CID, a.Port, nil)
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

// expectLine reads one line byte by byte (nothing after it may be consumed:
// it belongs to ttrpc) and checks it.
func expectLine(ctx context.Context, conn net.Conn, ok func(string) bool) error {
	if dl, has := ctx.Deadline(); has {
		_ = conn.SetReadDeadline(dl)
		defer conn.SetReadDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	var line []byte
	b := make([]byte, 1)
	for len(line) < 256 {
		if _, err := conn.Read(b); err != nil {
			return err
		}
		if b[0] == '\n' {
			if !ok(string(line)) {
				return fmt.Errorf("unexpected line %q", line)
			}
			return nil
		}
		line = append(line, b[0])
	}
	return errors.New("line too long")
}
