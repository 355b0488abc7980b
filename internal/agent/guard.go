package agent

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

// handshakeTimeout bounds how long a connection may take to prove itself;
// a peer that stalls is dropped and holds nothing.
const handshakeTimeout = 10 * time.Second

// maxHandshakes bounds the connections proving themselves at once, so a
// flood of dials costs the guest a few goroutines, not memory.
const maxHandshakes = 4

// readSecret loads the pod's channel secret, which the host handed over
// as a fw_cfg file. Without it the agent serves nobody.
func readSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent channel secret: %w (the host must pass it as fw_cfg %s)", err, channel.SecretFwCfgName)
	}
	if len(b) != channel.SecretLen {
		return nil, fmt.Errorf("agent channel secret %s: %d bytes, want %d", path, len(b), channel.SecretLen)
	}
	return b, nil
}

// guardedListener hands the ttrpc server only connections that come from
// the host (vsock CID 2; a serial port has no other peer) and prove they
// hold the pod's secret, and only one at a time: the pod's shim is the
// agent's single client.
type guardedListener struct {
	inner  net.Listener
	secret []byte
	nonces *channel.Nonces
	// permitted decides on a peer before a byte is exchanged.
	permitted func(net.Addr) bool

	conns  chan net.Conn
	errs   chan error
	closed chan struct{}
	slots  chan struct{} // one token per handshake in flight
	once   sync.Once

	// mu guards active, refused, onHangup and template.
	mu      sync.Mutex
	active  bool
	refused int
	// onHangup runs when a proven connection closes.
	onHangup func()
	// template says the host is saving this VM as a template: its
	// hang-up is not the pod's end, the next host is a clone's.
	template bool
}

var _ net.Listener = (*guardedListener)(nil)

func guard(l net.Listener, secret []byte) *guardedListener {
	g := &guardedListener{
		inner: l, secret: secret, permitted: hostPeer,
		nonces: channel.NewNonces(secret, func() int64 { return int64(uptime()) }),
		conns:  make(chan net.Conn), errs: make(chan error, 1), closed: make(chan struct{}),
		slots: make(chan struct{}, maxHandshakes),
	}
	go g.acceptLoop()
	return g
}

// hostPeer admits the host's vsock CID only: with no loopback transport in
// the guest kernel nothing in the guest can dial, but another guest or a
// misrouted peer must not either. Non-vsock peers are a serial port's host
// end, reachable only through a root-owned 0600 socket.
func hostPeer(a net.Addr) bool {
	if v, ok := a.(*vsock.Addr); ok {
		return v.ContextID == channel.HostCID
	}
	return true
}

func (g *guardedListener) acceptLoop() {
	for {
		c, err := g.inner.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				g.errs <- err
				return
			}
			// A transient failure (a serial port that did not reopen)
			// must not end the agent; try again shortly.
			Logf("agent channel: accept: %v", err)
			select {
			case <-g.closed:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if !g.permitted(c.RemoteAddr()) {
			g.refuse(c, fmt.Sprintf("peer %s is not the host", c.RemoteAddr()))
			continue
		}
		select {
		case g.slots <- struct{}{}:
			go g.handshake(c)
		default:
			g.refuse(c, "too many connections proving themselves")
		}
	}
}

func (g *guardedListener) handshake(c net.Conn) {
	defer func() { <-g.slots }()
	_ = c.SetDeadline(time.Now().Add(handshakeTimeout))
	if err := channel.Accept(c, g.secret, g.nonces.Next()); err != nil {
		g.refuse(c, err.Error())
		return
	}
	_ = c.SetDeadline(time.Time{})
	g.mu.Lock()
	if g.active {
		g.mu.Unlock()
		g.refuse(c, "the host's connection is already open")
		return
	}
	g.active = true
	g.mu.Unlock()
	gc := &guardedConn{Conn: c, release: g.release}
	select {
	case g.conns <- gc:
	case <-g.closed:
		gc.Close()
	}
}

func (g *guardedListener) release() {
	g.mu.Lock()
	g.active = false
	hangup := g.onHangup
	if g.template {
		g.template, hangup = false, nil
	}
	g.mu.Unlock()
	if hangup != nil {
		go hangup()
	}
}

// holdForTemplate lets the current host hang up without ending the VM:
// the host saves it as a template, and each clone's host connects anew.
// Only the next hang-up is spared.
func (g *guardedListener) holdForTemplate() {
	g.mu.Lock()
	g.template = true
	g.mu.Unlock()
}

// whenHostHangsUp sets what to do once the host's proven connection ends.
func (g *guardedListener) whenHostHangsUp(f func()) {
	g.mu.Lock()
	g.onHangup = f
	g.mu.Unlock()
}

// refuse drops a connection; the log is thinned so a dial flood cannot
// flood the console.
func (g *guardedListener) refuse(c net.Conn, why string) {
	c.Close()
	g.mu.Lock()
	g.refused++
	n := g.refused
	g.mu.Unlock()
	if n <= 10 || n%1000 == 0 {
		Logf("agent channel: refused a connection (%d so far): %s", n, why)
	}
}

func (g *guardedListener) Accept() (net.Conn, error) {
	select {
	case c := <-g.conns:
		return c, nil
	case err := <-g.errs:
		g.errs <- err
		return nil, err
	case <-g.closed:
		return nil, net.ErrClosed
	}
}

func (g *guardedListener) Close() error {
	var err error
	g.once.Do(func() {
		close(g.closed)
		err = g.inner.Close()
	})
	return err
}

func (g *guardedListener) Addr() net.Addr { return g.inner.Addr() }

// guardedConn frees the listener's single slot when closed, and ends when
// a new host knocks (see frames).
type guardedConn struct {
	net.Conn
	release func()
	once    sync.Once
	// frames is only used by the ttrpc server's single reader.
	frames frameTracker
}

// Read hands ttrpc its frames and reports io.EOF once a byte that cannot
// start a frame arrives where a frame must start. On a virtio-serial port
// that is a new host connection's handshake nudge (channel.Connect's empty
// lines): the host hung up and redialled so fast that the guest kernel
// never showed this read the hang-up (the port's "host connected" flag
// went down and up before the reader woke). Ending here makes the agent
// reopen the port and greet the new host, instead of taking the nudges
// for the length of a huge message and waiting for it for ever.
func (c *guardedConn) Read(p []byte) (int, error) {
	if c.frames.ended {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(p)
	if k := c.frames.scan(p[:n]); k < n {
		Logf("agent channel: a new host connection began on the open port: ending the old one")
		return k, nil // the next Read reports io.EOF
	}
	return n, err
}

// Close marks the host's slot free before closing: on a serial port the
// close lets the listener reopen the port at once, and a host that proves
// itself on it must not find the old connection still counted as open.
func (c *guardedConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// ttrpc frames: a 10-byte header (length, stream id: big-endian uint32s;
// type; flags) then length bytes. ttrpc refuses messages over 4 MiB, so
// the first byte of every honest header is 0.
const frameHeaderLen = 10

// frameTracker follows frame boundaries in the bytes the host sends.
type frameTracker struct {
	hdr     [frameHeaderLen]byte
	hdrN    int    // header bytes seen of the current frame
	payload uint32 // payload bytes still to come
	ended   bool
}

// scan consumes b and returns how many of its bytes belong to frames: less
// than len(b) when a frame would start with a nonzero byte.
func (f *frameTracker) scan(b []byte) int {
	i := 0
	for i < len(b) && !f.ended {
		switch {
		case f.payload > 0:
			step := min(uint32(len(b)-i), f.payload)
			f.payload -= step
			i += int(step)
		case f.hdrN == 0 && b[i] != 0:
			f.ended = true
			return i
		default:
			f.hdr[f.hdrN] = b[i]
			f.hdrN++
			i++
			if f.hdrN == frameHeaderLen {
				f.payload = binary.BigEndian.Uint32(f.hdr[:4])
				f.hdrN = 0
			}
		}
	}
	return i
}
