package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"
)

// IO names where a process's standard streams go on the host, as
// containerd gives them: FIFO paths, or file:// and binary:// URIs.
type IO struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// openHostIO opens the host side as containerd's runc shim does, so that a
// client may close its ends and open them again (re-attach) at any time:
//
//   - stdin: a read end for the copier and, once the process is created
//     (holdStdin), a write end the shim holds itself. A client closing its
//     writer is then no EOF for the process; CloseIO drops the shim's
//     writer, and the process sees EOF once every client writer is gone
//     too.
//   - stdout, stderr FIFOs: opened read-write. The shim's own read side
//     keeps the FIFO open while no client reads, so writes never fail with
//     EPIPE and what was written waits in the FIFO for the next reader; the
//     copier blocks when it is full, as runc's does.
//
// No open blocks: containerd's client may open its ends after the shim
// does (cio.NewDirectIO opens them asynchronously), and nothing here waits
// for it. ctx bounds only a binary:// logger's start.
func openHostIO(ctx context.Context, id string, cfg IO) (_ *hostIO, retErr error) {
	h := &hostIO{cfg: cfg, outDone: make(chan struct{})}
	defer func() {
		if retErr != nil {
			h.closeOutputs()
			h.close()
		}
	}()
	if cfg.Stdin != "" {
		if err := h.openStdin(cfg.Stdin); err != nil {
			return nil, err
		}
	}
	u, err := url.Parse(cfg.Stdout)
	if err != nil {
		return nil, fmt.Errorf("stdout uri %q: %w", cfg.Stdout, err)
	}
	switch u.Scheme {
	case "file":
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			return nil, fmt.Errorf("open log file %s: %w", u.Path, err)
		}
		w := &sharedWriter{w: f, refs: 2}
		h.stdout, h.stderr = w, w
		if cfg.Terminal {
			w.refs = 1
			h.stderr = nil
		}
	case "binary":
		b, err := startBinaryLogger(ctx, id, u)
		if err != nil {
			return nil, err
		}
		h.stdout, h.stderr = b.stdout, b.stderr
		h.closer = append(h.closer, b)
		// A logger that stops reading blocks the copier in a write.
		h.unblock = append(h.unblock, b.stdout, b.stderr)
	case "", "fifo":
		if err := h.openOutputs(cfg); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("stdout uri %q: unknown scheme %q", cfg.Stdout, u.Scheme)
	}
	return h, nil
}

// openStdin opens the stdin FIFO's read end for the copier, without
// blocking: the client may open its writer later. The shim's own writer
// comes later too (holdStdin). A stdin that is not a FIFO (containerd
// always gives one) is read as it is, without a held writer.
func (h *hostIO) openStdin(path string) error {
	r, err := os.OpenFile(path, os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open stdin %s: %w", path, err)
	}
	h.stdin = r
	fifo, err := isFifo(r)
	if err != nil {
		return fmt.Errorf("stdin %s: %w", path, err)
	}
	h.stdinFifo = fifo
	return nil
}

// holdStdin opens the shim's own writer of the stdin FIFO, once: when the
// process is created (an init) or started (an exec), as containerd's runc
// shim does. Until then a client that wrote its input and closed its end
// has given the process EOF, with no CloseIO: `echo x | ctr run … cat`
// relies on it (ctr wires up its CloseIO only after the task exists, by
// when a short input is long written). After it, EOF takes CloseIO and
// every client writer closed, so clients may come and go (re-attach).
func (h *hostIO) holdStdin() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stdinHeld || !h.stdinFifo {
		return nil
	}
	h.stdinHeld = true
	if h.stdinClosing || writersCameAndWent(h.stdin) {
		return nil
	}
	w, err := os.OpenFile(h.cfg.Stdin, os.O_WRONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open stdin %s for writing: %w", h.cfg.Stdin, err)
	}
	h.stdinHold = w
	return nil
}

// writersCameAndWent says a writer opened the FIFO r reads since r was
// opened, and none is open now: Linux reports POLLHUP on a non-blocking
// FIFO read end only then (not before the first writer).
func writersCameAndWent(r *os.File) bool {
	rc, err := r.SyscallConn()
	if err != nil {
		return false
	}
	hup := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if n, err := unix.Poll(fds, 0); err == nil && n == 1 {
			hup = fds[0].Revents&unix.POLLHUP != 0
		}
	})
	return hup
}

// openOutputs opens stdout and stderr paths: FIFOs read-write (see
// openHostIO), anything else (a file or device) for appending, one writer
// shared when both name the same file.
func (h *hostIO) openOutputs(cfg IO) error {
	var shared *sharedWriter
	for _, s := range []struct {
		path string
		dst  *io.WriteCloser
		on   bool
	}{
		{cfg.Stdout, &h.stdout, cfg.Stdout != ""},
		{cfg.Stderr, &h.stderr, cfg.Stderr != "" && !cfg.Terminal},
	} {
		if !s.on {
			continue
		}
		if shared != nil && s.path == cfg.Stdout {
			shared.refs++
			*s.dst = shared
			continue
		}
		st, err := os.Stat(s.path)
		if err != nil {
			return fmt.Errorf("output %s: %w", s.path, err)
		}
		if st.Mode()&os.ModeNamedPipe != 0 {
			f, err := os.OpenFile(s.path, os.O_RDWR|unix.O_NONBLOCK, 0)
			if err != nil {
				return fmt.Errorf("open output %s: %w", s.path, err)
			}
			*s.dst = fifoOut{f}
			h.unblock = append(h.unblock, f)
			continue
		}
		// A file or device: appended to, as runc's shim does.
		f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return fmt.Errorf("open output %s: %w", s.path, err)
		}
		shared = &sharedWriter{w: f, refs: 1}
		*s.dst = shared
	}
	return nil
}

func isFifo(f *os.File) (bool, error) {
	st, err := f.Stat()
	if err != nil {
		return false, err
	}
	return st.Mode()&os.ModeNamedPipe != 0, nil
}

// sharedWriter lets stdout and stderr share one file; the last Close closes it.
type sharedWriter struct {
	// mu guards w and refs.
	mu   sync.Mutex
	w    io.WriteCloser
	refs int
}

func (s *sharedWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func (s *sharedWriter) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refs--
	if s.refs == 0 {
		return s.w.Close()
	}
	if s.refs < 0 {
		return errors.New("log file closed more often than opened")
	}
	return nil
}
