package agent

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

// portListener models a virtio-serial port: one byte stream (the port)
// that outlives the connections over it. Each Accept "opens the port"
// (after the previous connection closed) and hands out a view of the same
// stream, as serialListener does; closing a view does not touch the
// stream. A host that hangs up and redials before the guest's read sees
// the hang-up is then simply a new handshake arriving on the stream the
// old connection still reads, which is what the guest kernel shows the
// agent when the hang-up and the redial reach it in one batch.
type portListener struct {
	port   net.Conn
	free   chan struct{}
	closed chan struct{}
	once   sync.Once
}

func newPortListener(port net.Conn) *portListener {
	l := &portListener{port: port, free: make(chan struct{}, 1), closed: make(chan struct{})}
	l.free <- struct{}{}
	return l
}

func (l *portListener) Accept() (net.Conn, error) {
	select {
	case <-l.free:
		return &portView{Conn: l.port, release: func() { l.free <- struct{}{} }}, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *portListener) Close() error {
	l.once.Do(func() { close(l.closed); l.port.Close() })
	return nil
}

func (l *portListener) Addr() net.Addr { return serialAddr("test-port") }

type portView struct {
	net.Conn
	release func()
	once    sync.Once
	mu      sync.Mutex // guards closed
	closed  bool
}

func (v *portView) Read(p []byte) (int, error) {
	v.mu.Lock()
	closed := v.closed
	v.mu.Unlock()
	if closed {
		return 0, io.EOF
	}
	return v.Conn.Read(p)
}

func (v *portView) Close() error {
	v.mu.Lock()
	v.closed = true
	v.mu.Unlock()
	v.once.Do(v.release)
	return nil
}

func (v *portView) RemoteAddr() net.Addr { return serialAddr("host") }

// hostSide is the host's end of the port seen as one connection: Close
// does not end the stream (a new host connection continues it).
type hostSide struct{ net.Conn }

func (hostSide) Close() error { return nil }

// An immediate redial after a hang-up the agent missed still gets a
// greeting: the new host's nudges end the stale session instead of being
// taken for a ttrpc frame (before the fix the agent's ttrpc server read
// them as the length of a 167 MB message and waited for it for ever).
func TestRedialAfterMissedHangup(t *testing.T) {
	guestEnd, hostEnd := net.Pipe()
	g := guard(newPortListener(guestEnd), secret)
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentapi.RegisterAgentService(srv, newTestService(t))
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(context.Background(), g) }()
	t.Cleanup(func() {
		_ = srv.Close()
		hostEnd.Close()
		<-served
	})

	// The first host: handshake, one call, then it is gone without the
	// guest seeing the port close.
	_ = hostEnd.SetDeadline(time.Now().Add(5 * time.Second))
	if err := channel.Connect(hostEnd, secret); err != nil {
		t.Fatal(err)
	}
	_ = hostEnd.SetDeadline(time.Time{})
	gone := make(chan struct{})
	tc := ttrpc.NewClient(hostSide{hostEnd}, ttrpc.WithOnClose(func() { close(gone) }))
	if _, err := agentapi.NewAgentClient(tc).Check(context.Background(), &agentapi.CheckRequest{}); err != nil {
		t.Fatal(err)
	}
	// Stop the first client's reader so it does not steal the new
	// host's bytes, then let the stream flow again.
	_ = hostEnd.SetReadDeadline(time.Unix(1, 0))
	<-gone
	tc.Close()
	_ = hostEnd.SetReadDeadline(time.Time{})

	// The redial: a new handshake on the same stream.
	_ = hostEnd.SetDeadline(time.Now().Add(5 * time.Second))
	if err := channel.Connect(hostEnd, secret); err != nil {
		t.Fatalf("the redial got no greeting: %v", err)
	}
	_ = hostEnd.SetDeadline(time.Time{})
	tc2 := ttrpc.NewClient(hostSide{hostEnd})
	defer tc2.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := agentapi.NewAgentClient(tc2).Check(ctx, &agentapi.CheckRequest{}); err != nil {
		t.Fatalf("check on the redialled connection: %v", err)
	}
	_ = hostEnd.SetReadDeadline(time.Unix(1, 0))
}

// Frame boundaries are followed across reads; a nudge inside a payload is
// data, one at a boundary ends the connection.
func TestFrameTracker(t *testing.T) {
	frame := func(payload string) []byte {
		b := make([]byte, frameHeaderLen, frameHeaderLen+len(payload))
		b[3] = byte(len(payload))
		b[7], b[8] = 1, 1 // stream 1, request
		return append(b, payload...)
	}
	stream := append(frame("\n\n\xff"), frame("")...)
	stream = append(stream, frame("x\n")...)
	for split := 1; split <= len(stream); split++ {
		var f frameTracker
		for i := 0; i < len(stream); i += split {
			chunk := stream[i:min(i+split, len(stream))]
			if n := f.scan(chunk); n != len(chunk) {
				t.Fatalf("split %d: a frame boundary was lost at byte %d", split, i+n)
			}
		}
		if n := f.scan([]byte("\n")); n != 0 || !f.ended {
			t.Fatalf("split %d: a nudge at a boundary was taken for data", split)
		}
	}
	var f frameTracker
	if n := f.scan(append(frame("ab"), '\n', 0, 0)); n != frameHeaderLen+2 {
		t.Fatalf("the frame before a nudge: kept %d bytes", n)
	}
}
