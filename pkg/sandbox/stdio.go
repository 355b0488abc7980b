package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// hostIO copies between the host endpoints and the agent's streams.
type hostIO struct {
	cfg       IO
	stdin     *os.File // the stdin FIFO's read end, the copier's
	stdinFifo bool     // stdin is a FIFO: the shim holds a writer (holdStdin)
	stdout    io.WriteCloser
	stderr    io.WriteCloser
	closer    []io.Closer // extra things to close at the end (binary loggers)
	// unblock are writers a copier may block on (a FIFO nobody reads, a
	// stalled log binary): closed to cut the output.
	unblock []io.Closer

	outDone chan struct{} // stdout and stderr reached EOF and were written
	// chunks counts output written (in outPiece pieces), so a drain can
	// tell a stream that is still moving from one that is stuck.
	chunks atomic.Uint64

	// mu guards stdinHold, stdinHeld, stdinClosing, outStarted and stopOut.
	mu sync.Mutex
	// stdinHold is the shim's own write end of the stdin FIFO, from
	// holdStdin until CloseIO; stdinHeld says holdStdin ran; stdinClosing
	// says CloseIO came (before holdStdin, no writer is held at all).
	stdinHold    *os.File
	stdinHeld    bool
	stdinClosing bool
	// outStarted: the output copiers own stdout and stderr (they close
	// them); stopOut cancels their reads.
	outStarted bool
	stopOut    context.CancelFunc
}

// streamReader is one agent output stream.
type streamReader func(context.Context, *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error)

// readChunk is what one ReadStdout asks for; large enough that a busy
// stream costs few round trips, well under ttrpc's 4 MiB message limit.
// An answer larger than asked for is refused.
const readChunk = 1 << 20

// outPiece is how much of a chunk one host write carries: a FIFO holds
// 64 KiB, so a slow reader still shows progress piece by piece.
const outPiece = 64 << 10

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
// stalling its end, or the host side stopped reading. A copier blocked in
// a write (a FIFO no client reads) is released by closing its writer;
// what it had not written is lost, as the process is.
func (h *hostIO) stopOutput() {
	h.mu.Lock()
	stop := h.stopOut
	h.mu.Unlock()
	if stop != nil {
		stop()
	}
	for _, c := range h.unblock {
		c.Close()
	}
}

// copyOut pulls one stream until the agent reports EOF, fails, answers
// with more than it was asked for, or ctx ends. A host writer that fails
// (a log binary that exited) does not stop the pull: the process must not
// block on a full pipe in the guest. A FIFO no client reads does not fail:
// it holds what it can for the next reader, then blocks the copy, as with
// runc.
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
		for len(data) > 0 {
			n := min(len(data), outPiece)
			if !werr {
				if _, err := w.Write(data[:n]); err != nil {
					werr = true
				}
			}
			data = data[n:]
			chunks.Add(1)
		}
	}
	if f, ok := w.(fifoOut); ok && !werr {
		f.waitRead(ctx)
	}
	if w != nil {
		w.Close()
	}
}

// stdinTarget is where a process's stdin goes: ctx is the process's life
// (WriteStdin may wait as long as the process does not read), timeout
// bounds the CloseStdin sent at EOF.
type stdinTarget struct {
	ctx      context.Context
	a        Agent
	cid, eid string
	timeout  time.Duration
	log      *slog.Logger
}

// startStdin copies host stdin to the agent until EOF: every writer gone,
// the shim's own included (CloseIO drops it). Then it closes the process's
// stdin, after every byte read has been written, and containerd's clients
// may come and go in between (re-attach) without the process noticing.
func (h *hostIO) startStdin(t stdinTarget) {
	if h.stdin == nil {
		return
	}
	if err := h.holdStdin(); err != nil {
		// The process still gets what clients write, and EOF once the
		// last of them closes its end.
		t.log.Warn("stdin: the shim could not hold the FIFO open", "container", t.cid, "exec", t.eid, "err", err)
	}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := h.stdin.Read(buf)
			if n > 0 {
				if werr := writeAll(t, buf[:n]); werr != nil {
					if errors.Is(werr, ErrBadAnswer) {
						t.log.Error("stdin stream failed", "container", t.cid, "exec", t.eid, "err", werr)
						// containerd's writers get EPIPE rather than a
						// pipe nobody reads.
						h.dropStdin()
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

// requestCloseStdin is containerd's CloseIO: the shim lets go of its own
// write end, so the process sees EOF once the clients' writers are closed
// too, and not before what they wrote has been copied. It never waits;
// before the process starts it takes effect at start.
func (h *hostIO) requestCloseStdin() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.stdinClosing = true
	if h.stdinHold != nil {
		h.stdinHold.Close()
		h.stdinHold = nil
	}
}

// dropStdin ends the stdin copy at once: the read end closes too.
func (h *hostIO) dropStdin() {
	h.requestCloseStdin()
	if h.stdin != nil {
		h.stdin.Close()
	}
}

// close releases the stdin ends and the log binaries; the output writers
// belong to the copiers (or closeOutputs).
func (h *hostIO) close() {
	var errs []error
	h.mu.Lock()
	hold := h.stdinHold
	h.stdinHold = nil
	h.mu.Unlock()
	for _, f := range []*os.File{h.stdin, hold} {
		if f != nil {
			errs = append(errs, f.Close())
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
