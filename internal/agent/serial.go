package agent

import (
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// serialListener serves a virtio-serial port as a stream of connections: one
// per host connection. The port can only be open once, so Accept waits for
// the previous connection to close before reopening it.
type serialListener struct {
	path   string
	free   chan struct{} // holds a token while no connection is open
	closed chan struct{}
}

var _ net.Listener = (*serialListener)(nil)

func newSerialListener(path string) *serialListener {
	l := &serialListener{path: path, free: make(chan struct{}, 1), closed: make(chan struct{})}
	l.free <- struct{}{}
	return l
}

func (l *serialListener) Accept() (net.Conn, error) {
	select {
	case <-l.free:
	case <-l.closed:
		return nil, net.ErrClosed
	}
	f, err := os.OpenFile(l.path, os.O_RDWR, 0)
	if err != nil {
		l.free <- struct{}{}
		return nil, fmt.Errorf("open %s: %w", l.path, err)
	}
	if err := l.waitHost(f); err != nil {
		f.Close()
		l.free <- struct{}{}
		return nil, err
	}
	// QEMU drops guest writes while no host client is connected, so the
	// handshake (whose first line the agent writes) starts only now.
	return &serialConn{File: f, release: func() { l.free <- struct{}{} }}, nil
}

// waitHost waits until the host side of the port is connected. The port
// reports POLLHUP until then and poll cannot wait for that to clear.
func (l *serialListener) waitHost(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for {
		var hup bool
		var perr error
		cerr := rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			_, perr = unix.Poll(fds, 0)
			hup = fds[0].Revents&unix.POLLHUP != 0
		})
		if cerr != nil {
			return cerr
		}
		if perr != nil && perr != unix.EINTR {
			return fmt.Errorf("poll %s: %w", l.path, perr)
		}
		if !hup {
			return nil
		}
		select {
		case <-l.closed:
			return net.ErrClosed
		case <-time.After(5 * time.Millisecond):
		}
	}
}

func (l *serialListener) Close() error {
	select {
	case <-l.closed:
	default:
		close(l.closed)
	}
	return nil
}

func (l *serialListener) Addr() net.Addr { return serialAddr(l.path) }

type serialAddr string

func (a serialAddr) Network() string { return "virtio-serial" }
func (a serialAddr) String() string  { return string(a) }

// serialConn is an open port; closing it lets Accept reopen the port.
type serialConn struct {
	*os.File
	release func()
	once    sync.Once
}

var _ net.Conn = (*serialConn)(nil)

func (c *serialConn) Close() error {
	var err error
	c.once.Do(func() {
		err = c.File.Close()
		c.release()
	})
	return err
}

func (c *serialConn) LocalAddr() net.Addr  { return serialAddr(c.Name()) }
func (c *serialConn) RemoteAddr() net.Addr { return serialAddr("host") }
