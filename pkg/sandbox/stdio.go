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
	"syscall"

	"github.com/containerd/fifo"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// IO names where a process's standard streams go on the host, as
// containerd gives them: FIFO paths, or file:// and binary:// URIs.
type IO struct {
	Stdin, Stdout, Stderr string
	Terminal              bool
}

// hostIO copies between the host endpoints and the agent's streams.
type hostIO struct {
	cfg    IO
	stdin  io.ReadCloser
	stdout io.WriteCloser
	stderr io.WriteCloser
	closer []io.Closer // extra things to close at the end (binary loggers)

	outDone chan struct{} // stdout and stderr reached EOF and were written

	// mu guards closeReq and copying.
	mu       sync.Mutex
	closeReq bool
	copying  bool
}

// openHostIO opens the host side. containerd has opened the other ends of
// the FIFOs before it asks for a process, so these opens do not block long;
// the context bounds them anyway.
func openHostIO(ctx context.Context, id string, cfg IO) (_ *hostIO, retErr error) {
	h := &hostIO{cfg: cfg, outDone: make(chan struct{})}
	defer func() {
		if retErr != nil {
			h.close()
		}
	}()
	if cfg.Stdin != "" {
		f, err := fifo.OpenFifo(ctx, cfg.Stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin %s: %w", cfg.Stdin, err)
		}
		h.stdin = f
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
	case "", "fifo":
		if cfg.Stdout != "" {
			if h.stdout, err = fifo.OpenFifo(ctx, cfg.Stdout, syscall.O_WRONLY, 0); err != nil {
				return nil, fmt.Errorf("open stdout %s: %w", cfg.Stdout, err)
			}
		}
		if cfg.Stderr != "" && !cfg.Terminal {
			if h.stderr, err = fifo.OpenFifo(ctx, cfg.Stderr, syscall.O_WRONLY, 0); err != nil {
				return nil, fmt.Errorf("open stderr %s: %w", cfg.Stderr, err)
			}
		}
	default:
		return nil, fmt.Errorf("stdout uri %q: unknown scheme %q", cfg.Stdout, u.Scheme)
	}
	return h, nil
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
	return nil
}

// streamReader is one agent output stream.
type streamReader func(context.Context, *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error)

// readChunk is what one ReadStdout asks for; large enough that a busy
// stream costs few round trips, well under ttrpc's 4 MiB message limit.
const readChunk = 1 << 20

// startOutput copies the agent's stdout and stderr to the host until EOF.
func (h *hostIO) startOutput(a Agent, cid, eid string) {
	var wg sync.WaitGroup
	for _, s := range []struct {
		read streamReader
		w    io.WriteCloser
		on   bool
	}{
		{a.ReadStdout, h.stdout, true},
		{a.ReadStderr, h.stderr, !h.cfg.Terminal},
	} {
		if !s.on {
			continue
		}
		wg.Add(1)
		go func(read streamReader, w io.WriteCloser) {
			defer wg.Done()
			copyOut(read, w, cid, eid)
		}(s.read, s.w)
	}
	go func() {
		wg.Wait()
		close(h.outDone)
	}()
}

// copyOut pulls one stream until the agent reports EOF or is gone. A host
// reader that went away does not stop the pull: the process must not block
// on a full pipe in the guest.
func copyOut(read streamReader, w io.WriteCloser, cid, eid string) {
	werr := w == nil
	for {
		r, err := read(context.Background(), &agentapi.ReadStreamRequest{ContainerId: cid, ExecId: eid, Len: readChunk})
		if err != nil || len(r.Data) == 0 {
			break
		}
		if !werr {
			if _, err := w.Write(r.Data); err != nil {
				werr = true
			}
		}
	}
	if w != nil {
		w.Close()
	}
}

// startStdin copies host stdin to the agent; at EOF (or CloseIO) it closes
// the process's stdin, after every byte read has been written.
func (h *hostIO) startStdin(a Agent, cid, eid string) {
	h.mu.Lock()
	if h.stdin == nil {
		h.mu.Unlock()
		return
	}
	if h.closeReq {
		h.mu.Unlock()
		closeStdin(a, cid, eid)
		return
	}
	h.copying = true
	h.mu.Unlock()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := h.stdin.Read(buf)
			if n > 0 && !writeAll(a, cid, eid, buf[:n]) {
				break
			}
			if err != nil {
				break
			}
		}
		closeStdin(a, cid, eid)
	}()
}

func writeAll(a Agent, cid, eid string, data []byte) bool {
	for len(data) > 0 {
		r, err := a.WriteStdin(context.Background(), &agentapi.WriteStreamRequest{ContainerId: cid, ExecId: eid, Data: data})
		if err != nil || r.Len == 0 {
			return false
		}
		data = data[r.Len:]
	}
	return true
}

func closeStdin(a Agent, cid, eid string) {
	_, _ = a.CloseStdin(context.Background(), &agentapi.ProcessRequest{ContainerId: cid, ExecId: eid})
}

// requestCloseStdin is containerd's CloseIO: end the stdin copy. Before the
// process starts it is remembered; the copier is never waited for here.
func (h *hostIO) requestCloseStdin() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closeReq = true
	if h.copying && h.stdin != nil {
		h.stdin.Close()
	}
}

func (h *hostIO) close() {
	var errs []error
	for _, c := range []io.Closer{h.stdin} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	for _, c := range h.closer {
		errs = append(errs, c.Close())
	}
	_ = errors.Join(errs...)
}

// closeOutputs is for a process that never started: nothing will copy.
// (A file:// log shares one writer between both: it counts its closes.)
func (h *hostIO) closeOutputs() {
	for _, w := range []io.WriteCloser{h.stdout, h.stderr} {
		if w != nil {
			w.Close()
		}
	}
}
