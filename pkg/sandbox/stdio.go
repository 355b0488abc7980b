package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
	// chunks counts output chunks written, so a drain can tell a stream
	// that is still moving from one the agent stalls.
	chunks atomic.Uint64

	// mu guards closeReq, copying, outStarted and stopOut.
	mu       sync.Mutex
	closeReq bool
	copying  bool
	// outStarted: the output copiers own stdout and stderr (they close
	// them); stopOut cancels their reads.
	outStarted bool
	stopOut    context.CancelFunc
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
// An answer larger than asked for is refused.
const readChunk = 1 << 20

// startOutput copies the agent's stdout and stderr to the host until EOF,
// until ctx ends, or until stopOutput. Each chunk is written through as
// it comes, so endless output costs the host no memory.
func (h *hostIO) startOutput(ctx context.Context, a Agent, cid, eid string, log *slog.Logger) {
	ctx, cancel := context.WithCancel(ctx)
	h.mu.Lock()
	h.outStarted, h.stopOut = true, cancel
	h.mu.Unlock()
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
			copyOut(ctx, read, w, cid, eid, log, &h.chunks)
		}(s.read, s.w)
	}
	go func() {
		wg.Wait()
		cancel()
		close(h.outDone)
	}()
}

// stopOutput ends the output copy: the process is gone, or the agent is
// stalling its end.
func (h *hostIO) stopOutput() {
	h.mu.Lock()
	stop := h.stopOut
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// copyOut pulls one stream until the agent reports EOF, fails, answers
// with more than it was asked for, or ctx ends. A host reader that went
// away does not stop the pull: the process must not block on a full pipe
// in the guest.
func copyOut(ctx context.Context, read streamReader, w io.WriteCloser, cid, eid string, log *slog.Logger, chunks *atomic.Uint64) {
	werr := w == nil
	for {
		r, err := read(ctx, &agentapi.ReadStreamRequest{ContainerId: cid, ExecId: eid, Len: readChunk})
		if err != nil {
			break
		}
		data := r.GetData()
		if len(data) == 0 {
			break
		}
		if len(data) > readChunk {
			log.Error("output stream failed; the rest of it is lost", "container", cid, "exec", eid,
				"err", badAnswer("a read of %d bytes answered with %d", readChunk, len(data)))
			break
		}
		if !werr {
			if _, err := w.Write(data); err != nil {
				werr = true
			}
		}
		chunks.Add(1)
	}
	if w != nil {
		w.Close()
	}
}

// stdinTarget is where a process's stdin goes: ctx is the process's life
// (WriteStdin may wait as long as the process does not read), timeout
// bounds the CloseStdin that CloseIO asks for.
type stdinTarget struct {
	ctx      context.Context
	a        Agent
	cid, eid string
	timeout  time.Duration
	log      *slog.Logger
}

// startStdin copies host stdin to the agent; at EOF (or CloseIO) it closes
// the process's stdin, after every byte read has been written.
func (h *hostIO) startStdin(t stdinTarget) {
	h.mu.Lock()
	if h.stdin == nil {
		h.mu.Unlock()
		return
	}
	if h.closeReq {
		h.mu.Unlock()
		closeStdin(t)
		return
	}
	h.copying = true
	h.mu.Unlock()
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := h.stdin.Read(buf)
			if n > 0 {
				if werr := writeAll(t, buf[:n]); werr != nil {
					if errors.Is(werr, ErrBadAnswer) {
						t.log.Error("stdin stream failed", "container", t.cid, "exec", t.eid, "err", werr)
						// containerd's writer gets EPIPE rather than a pipe
						// nobody reads.
						h.requestCloseStdin()
					}
					break
				}
			}
			if err != nil {
				break
			}
		}
		closeStdin(t)
	}()
}

// writeAll writes data through the agent, which says how much each call
// took: 1..len(data) is possible, anything else (0, more than was sent)
// is a lie that fails the stream.
func writeAll(t stdinTarget, data []byte) error {
	for len(data) > 0 {
		r, err := t.a.WriteStdin(t.ctx, &agentapi.WriteStreamRequest{ContainerId: t.cid, ExecId: t.eid, Data: data})
		if err != nil {
			return fmt.Errorf("write stdin of %s/%s: %w", t.cid, t.eid, err)
		}
		n := r.GetLen()
		if n == 0 || uint64(n) > uint64(len(data)) {
			return badAnswer("a stdin write of %d bytes answered as %d written", len(data), n)
		}
		data = data[n:]
	}
	return nil
}

func closeStdin(t stdinTarget) {
	ctx, cancel := context.WithTimeout(t.ctx, t.timeout)
	defer cancel()
	_, _ = t.a.CloseStdin(ctx, &agentapi.ProcessRequest{ContainerId: t.cid, ExecId: t.eid})
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

// closeOutputs is for a process that never started. If its output copy
// began (an init's begins at create), the copiers own the writers and are
// stopped; else the writers are closed here. (A file:// log shares one
// writer between both: it counts its closes.)
func (h *hostIO) closeOutputs() {
	h.mu.Lock()
	started := h.outStarted
	h.mu.Unlock()
	if started {
		h.stopOutput()
		return
	}
	for _, w := range []io.WriteCloser{h.stdout, h.stderr} {
		if w != nil {
			w.Close()
		}
	}
}
