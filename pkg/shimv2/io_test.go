package shimv2

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
)

// As with runc's shim, a client closing its stdin end is no EOF for the
// process (it may re-attach); CloseIO and the last writer's close are.
func TestStdinEOFAfterCloseIOAndWriters(t *testing.T) {
	h := newHarness(t, runs)
	fifo, w := stdinFifo(t)
	b := h.bundle("c", nil, "sleep")
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: b, Stdin: fifo}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "")
	if _, err := w.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	stdinIs(t, h, "ping", false)
	w.Close() // the client goes away
	w2, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if _, err := w2.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	stdinIs(t, h, "pingpong", false)
	if _, err := h.s.CloseIO(h.ctx, &taskAPI.CloseIORequest{ID: "c", Stdin: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	stdinIs(t, h, "pingpong!", false)
	w2.Close()
	stdinIs(t, h, "pingpong!", true)
}

// stdinIs waits until the agent got want on c's stdin, and closed it or not.
func stdinIs(t *testing.T, h *harness, want string, closed bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, eof := h.env.Agent.Stdin("c", "")
		if got == want && eof == closed {
			return
		}
		if eof && !closed {
			t.Fatalf("stdin closed with %q; want %q and open", got, want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent stdin %q closed=%v; want %q closed=%v", got, eof, want, closed)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// containerd may send CloseIO before Start; it must neither block nor be
// lost: the process's stdin closes once the client's writer is gone too.
func TestCloseIOBeforeStart(t *testing.T) {
	h := newHarness(t, runs)
	fifo, w := stdinFifo(t)
	h.create("c", "sleep")
	h.start("c", "")
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec("sleep"), Stdin: fifo}); err != nil {
		t.Fatal(err)
	}
	within(t, "CloseIO before Start", func() error {
		_, err := h.s.CloseIO(h.ctx, &taskAPI.CloseIORequest{ID: "c", ExecID: "e", Stdin: true})
		return err
	})
	h.start("c", "e")
	w.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, closed := h.env.Agent.Stdin("c", "e"); closed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("stdin was never closed after an early CloseIO")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestResizePty(t *testing.T) {
	h := newHarness(t, runs)
	b := h.bundle("c", nil, "sleep")
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: b, Terminal: true}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "")
	if _, err := h.s.ResizePty(h.ctx, &taskAPI.ResizePtyRequest{ID: "c", Width: 120, Height: 50}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, c := range h.env.Agent.Calls() {
		found = found || c == "TtyWinResize 120x50"
	}
	if !found {
		t.Fatalf("no resize reached the agent: %v", h.env.Agent.Calls())
	}
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "plain", Spec: execSpec("sleep")}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "plain")
	if _, err := h.s.ResizePty(h.ctx, &taskAPI.ResizePtyRequest{ID: "c", ExecID: "plain", Width: 1, Height: 1}); err == nil || !strings.Contains(err.Error(), "terminal") {
		t.Fatalf("resize without a terminal: %v", err)
	}
}

// stdinFifo makes a FIFO and holds its write end open, as containerd does
// before it asks for a task.
func stdinFifo(t *testing.T) (string, *os.File) {
	t.Helper()
	fifo := filepath.Join(t.TempDir(), "stdin")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(fifo, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fifo, w
}

// within fails the test if call does not return (or fails) within 5 s.
func within(t *testing.T, what string, call func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("%s blocked", what)
	}
}
