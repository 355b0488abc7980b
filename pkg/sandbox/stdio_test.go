package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/cio"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// catAgent is the agent's side of one process that copies its stdin to its
// stdout, as cat does: only the stream calls hostIO makes, with the rest of
// the Agent interface left nil (a call to it panics the test).
type catAgent struct {
	Agent
	outR *io.PipeReader
	outW *io.PipeWriter
	done chan struct{} // closed when the process ends (at stdin EOF)
	once sync.Once

	// mu guards stdin and eof.
	mu    sync.Mutex
	stdin []byte
	eof   bool
}

func newCatAgent() *catAgent {
	r, w := io.Pipe()
	return &catAgent{outR: r, outW: w, done: make(chan struct{})}
}

func (a *catAgent) WriteStdin(_ context.Context, r *agentapi.WriteStreamRequest) (*agentapi.WriteStreamResponse, error) {
	a.mu.Lock()
	a.stdin = append(a.stdin, r.Data...)
	a.mu.Unlock()
	n, err := a.outW.Write(r.Data)
	return &agentapi.WriteStreamResponse{Len: uint32(n)}, err
}

func (a *catAgent) CloseStdin(context.Context, *agentapi.ProcessRequest) (*agentapi.Empty, error) {
	a.mu.Lock()
	a.eof = true
	a.mu.Unlock()
	a.end() // cat exits at EOF
	return &agentapi.Empty{}, nil
}

// print is output the process makes by itself (not an echo of stdin).
func (a *catAgent) print(t *testing.T, s string) {
	t.Helper()
	if _, err := a.outW.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
}

func (a *catAgent) ReadStdout(_ context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
	buf := make([]byte, r.Len)
	n, err := a.outR.Read(buf)
	if err == io.EOF {
		return &agentapi.ReadStreamResponse{}, nil
	}
	return &agentapi.ReadStreamResponse{Data: buf[:n]}, err
}

// ReadStderr: cat writes nothing there; the stream ends with the process.
func (a *catAgent) ReadStderr(ctx context.Context, _ *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
	select {
	case <-a.done:
		return &agentapi.ReadStreamResponse{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (a *catAgent) state() (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return string(a.stdin), a.eof
}

// end ends the process: its streams reach EOF.
func (a *catAgent) end() {
	a.once.Do(func() {
		a.outW.Close()
		close(a.done)
	})
}

// startCat opens the host side of a cat process's IO the way the shim
// does: inside a request whose context ends when it returns (ttrpc cancels
// it), then starts the copiers. The output copy is stopped and the IO
// closed at cleanup.
func startCat(t *testing.T, cfg IO) (*catAgent, *hostIO) {
	t.Helper()
	req, cancel := context.WithCancel(context.Background())
	h, err := openHostIO(req, "c", cfg)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	a := newCatAgent()
	life, stop := context.WithCancel(context.Background())
	h.startOutput(life, a, "c", "e", slog.Default())
	h.startStdin(stdinTarget{ctx: life, a: a, cid: "c", eid: "e", timeout: time.Second, log: slog.Default()})
	t.Cleanup(func() {
		a.end()
		stop()
		select {
		case <-h.outDone:
		case <-time.After(5 * time.Second):
			t.Error("output copy did not end")
		}
		h.stopOutput()
		h.close()
	})
	return a, h
}

// readLine reads one line from r within 5 s.
func readLine(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		s, _ := r.ReadString('\n')
		got <- s
	}()
	select {
	case s := <-got:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("no output line within 5 s")
		return ""
	}
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 5 s: %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// containerd's DirectIO (the client opens its FIFO ends itself, without
// waiting for the shim's), then a re-attach with cio.NewAttach after the
// first client let go of every end: stdin written before and after reaches
// the process, output made while nobody read is not lost, and the process
// sees EOF only after CloseIO and the last writer's close.
func TestDirectIOThenReattach(t *testing.T) {
	ctx := context.Background()
	fifos, err := cio.NewFIFOSetInDir(t.TempDir(), "e", false)
	if err != nil {
		t.Fatal(err)
	}
	direct, err := cio.NewDirectIO(ctx, fifos)
	if err != nil {
		t.Fatal(err)
	}
	cfg := IO{Stdin: fifos.Stdin, Stdout: fifos.Stdout, Stderr: fifos.Stderr}
	a, h := startCat(t, cfg)

	if _, err := io.WriteString(direct.Stdin, "one\n"); err != nil {
		t.Fatalf("write stdin after start: %v", err)
	}
	if got := readLine(t, bufio.NewReader(direct.Stdout)); got != "one\n" {
		t.Fatalf("read %q, want one", got)
	}

	// The client goes away: every end it held is closed.
	direct.Stdin.Close()
	direct.Stdout.Close()
	direct.Stderr.Close()
	a.print(t, "while detached\n")
	if _, eof := a.state(); eof {
		t.Fatal("the client closing its stdin end was EOF for the process")
	}

	// A new client attaches to the same FIFOs.
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	attached, err := cio.NewAttach(cio.WithStreams(inR, outW, io.Discard))(cio.NewFIFOSet(cio.Config{
		Stdin: fifos.Stdin, Stdout: fifos.Stdout, Stderr: fifos.Stderr,
	}, nil))
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewReader(outR)
	if got := readLine(t, out); got != "while detached\n" {
		t.Fatalf("after re-attach read %q, want the output made while detached", got)
	}
	if _, err := io.WriteString(inW, "two\n"); err != nil {
		t.Fatal(err)
	}
	if got := readLine(t, out); got != "two\n" {
		t.Fatalf("read %q, want two", got)
	}

	// CloseIO while the client still writes: what it writes still arrives,
	// EOF comes with its close.
	h.requestCloseStdin()
	if _, err := io.WriteString(inW, "three\n"); err != nil {
		t.Fatal(err)
	}
	if got := readLine(t, out); got != "three\n" {
		t.Fatalf("read %q, want three", got)
	}
	inW.Close()
	eventually(t, "EOF after CloseIO and the last writer's close", func() bool { _, eof := a.state(); return eof })
	go func() { _, _ = io.Copy(io.Discard, outR) }()
	waited := make(chan struct{})
	go func() { attached.Wait(); close(waited) }()
	select {
	case <-waited: // the output FIFOs reached EOF: the shim closed its ends
	case <-time.After(5 * time.Second):
		t.Fatal("the client's copy never saw EOF on the output FIFOs")
	}
	attached.Cancel()
	outW.Close()
	if got, _ := a.state(); got != "one\ntwo\nthree\n" {
		t.Fatalf("process stdin %q", got)
	}
}

// CloseIO before the process starts (containerd may send it then) holds:
// EOF comes once the client's writer closes, after its bytes.
func TestCloseIOBeforeStartKeepsBytes(t *testing.T) {
	in := filepath.Join(t.TempDir(), "in")
	if err := syscall.Mkfifo(in, 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := openHostIO(context.Background(), "c", IO{Stdin: in})
	if err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(in, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteString("early\n"); err != nil {
		t.Fatal(err)
	}
	h.requestCloseStdin()
	a := newCatAgent()
	go func() { _, _ = io.Copy(io.Discard, a.outR) }()
	h.startStdin(stdinTarget{ctx: context.Background(), a: a, cid: "c", eid: "e", timeout: time.Second, log: slog.Default()})
	eventually(t, "bytes written before start", func() bool { got, _ := a.state(); return got == "early\n" })
	if _, err := w.WriteString("late\n"); err != nil {
		t.Fatal(err)
	}
	w.Close()
	eventually(t, "EOF after the writer closed", func() bool { got, eof := a.state(); return eof && got == "early\nlate\n" })
	h.closeOutputs()
	h.close()
}

// An output FIFO no client reads neither fails nor loses what it holds,
// and stopOutput frees a copier blocked on a full one.
func TestOutputFifoWithoutReader(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if err := syscall.Mkfifo(out, 0o600); err != nil {
		t.Fatal(err)
	}
	a, h := startCat(t, IO{Stdout: out})
	a.print(t, "kept\n")
	r, err := os.OpenFile(out, os.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if got := readLine(t, bufio.NewReader(r)); got != "kept\n" {
		t.Fatalf("late reader got %q", got)
	}
	r.Close()
	// More than a FIFO holds, with nobody reading: the copier blocks.
	go func() { _, _ = a.outW.Write(bytes.Repeat([]byte("x"), 1<<20)) }()
	eventually(t, "the FIFO filled", func() bool { return h.chunks.Load() >= 2 })
	h.stopOutput()
	a.end() // the agent's side ends too: only the host write could block now
	select {
	case <-h.outDone:
	case <-time.After(5 * time.Second):
		t.Fatal("stopOutput left the copier blocked on a full FIFO")
	}
}

// Paths that are not FIFOs (a file, as runc's shim allows) are appended
// to; stdout and stderr naming one file share one writer.
func TestOutputToPlainFile(t *testing.T) {
	log := filepath.Join(t.TempDir(), "log")
	if err := os.WriteFile(log, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a, h := startCat(t, IO{Stdout: log, Stderr: log})
	a.print(t, "new\n")
	a.end()
	select {
	case <-h.outDone:
	case <-time.After(5 * time.Second):
		t.Fatal("output copy did not end")
	}
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "old\nnew\n" {
		t.Fatalf("log %q", data)
	}
}

// With no endpoints (containerd's NullIO) output is pulled and dropped.
func TestNullIO(t *testing.T) {
	a, h := startCat(t, IO{})
	a.print(t, "dropped\n")
	a.end()
	select {
	case <-h.outDone:
	case <-time.After(5 * time.Second):
		t.Fatal("output copy did not end")
	}
}

func TestMissingStdinNamed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "absent")
	_, err := openHostIO(context.Background(), "c", IO{Stdin: p})
	if err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("open of a missing stdin: %v", err)
	}
}

// containerd 2.x's client closes its FIFO ends as soon as it learns of an
// exit (pkg/cio's Cancel, in task.Delete), so the output copy ends only
// once the reader has taken what is in the FIFO. A reader that takes
// nothing holds it back for fifoStall, no longer.
func TestOutputEndsAfterTheReaderTookIt(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	if err := syscall.Mkfifo(out, 0o600); err != nil {
		t.Fatal(err)
	}
	a, h := startCat(t, IO{Stdout: out})
	r, err := os.OpenFile(out, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	want := bytes.Repeat([]byte("y"), 48<<10) // fits the FIFO: the copier never blocks
	go func() { _, _ = a.outW.Write(want) }()
	eventually(t, "the output in the FIFO", func() bool { n, _ := h.stdout.(fifoOut).unread(); return n == len(want) })
	a.end()
	select {
	case <-h.outDone:
		t.Fatal("the output copy ended with 48 KiB its reader had not taken")
	case <-time.After(300 * time.Millisecond):
	}
	got, err := io.ReadAll(io.LimitReader(r, int64(len(want))))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(want))
	}
	select {
	case <-h.outDone:
	case <-time.After(5 * time.Second):
		t.Fatal("the output copy did not end once its reader had taken everything")
	}
}

func TestOutputEndsWhenNobodyReads(t *testing.T) {
	defer func(d time.Duration) { fifoStall = d }(fifoStall)
	fifoStall = 300 * time.Millisecond
	out := filepath.Join(t.TempDir(), "out")
	if err := syscall.Mkfifo(out, 0o600); err != nil {
		t.Fatal(err)
	}
	a, h := startCat(t, IO{Stdout: out})
	a.print(t, "nobody reads this\n")
	eventually(t, "the output in the FIFO", func() bool { n, _ := h.stdout.(fifoOut).unread(); return n > 0 })
	a.end()
	select {
	case <-h.outDone:
		t.Fatal("the output copy did not wait for a reader at all")
	case <-time.After(100 * time.Millisecond):
	}
	select {
	case <-h.outDone:
	case <-time.After(5 * time.Second):
		t.Fatal("an unread FIFO held the output copy past fifoStall")
	}
}

// As with runc's shim: a client that wrote its input and closed its end
// before the process was created gives it EOF without CloseIO (`echo x |
// ctr run … cat`); one still writing then needs CloseIO too.
func TestStdinClosedBeforeCreateIsEOF(t *testing.T) {
	for _, early := range []bool{true, false} {
		t.Run(fmt.Sprintf("closedEarly=%v", early), func(t *testing.T) {
			in := filepath.Join(t.TempDir(), "in")
			if err := syscall.Mkfifo(in, 0o600); err != nil {
				t.Fatal(err)
			}
			h, err := openHostIO(context.Background(), "c", IO{Stdin: in})
			if err != nil {
				t.Fatal(err)
			}
			defer h.close()
			w, err := os.OpenFile(in, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.WriteString("input\n"); err != nil {
				t.Fatal(err)
			}
			if early {
				w.Close()
			}
			if err := h.holdStdin(); err != nil { // the process is created
				t.Fatal(err)
			}
			if !early {
				w.Close()
			}
			a := newCatAgent()
			go func() { _, _ = io.Copy(io.Discard, a.outR) }()
			h.startStdin(stdinTarget{ctx: context.Background(), a: a, cid: "c", eid: "e", timeout: time.Second, log: slog.Default()})
			eventually(t, "the input", func() bool { got, _ := a.state(); return got == "input\n" })
			if !early {
				time.Sleep(100 * time.Millisecond)
				if _, eof := a.state(); eof {
					t.Fatal("EOF while the shim held the FIFO, before CloseIO")
				}
				h.requestCloseStdin()
			}
			eventually(t, "EOF", func() bool { _, eof := a.state(); return eof })
		})
	}
}
