package shimv2

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// recorded is what a "record FILE" process got on stdin, and whether it
// saw EOF.
func recorded(file string) (string, bool) {
	b, _ := os.ReadFile(file)
	_, err := os.Stat(file + ".eof")
	return string(b), err == nil
}

// As with runc's shim, a client closing its stdin end is no EOF for the
// process (it may re-attach); CloseIO and the last writer's close are.
func TestStdinEOFAfterCloseIOAndWriters(t *testing.T) {
	h := newHarness(t, runs)
	fifo, w := stdinFifo(t)
	rec := filepath.Join(t.TempDir(), "stdin")
	b := h.bundle("c", nil, "record", rec)
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: b, Stdin: fifo}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "")
	if _, err := w.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	stdinIs(t, rec, "ping", false)
	w.Close() // the client goes away
	w2, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	if _, err := w2.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	stdinIs(t, rec, "pingpong", false)
	if _, err := h.s.CloseIO(h.ctx, &taskAPI.CloseIORequest{ID: "c", Stdin: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Write([]byte("!")); err != nil {
		t.Fatal(err)
	}
	stdinIs(t, rec, "pingpong!", false)
	w2.Close()
	stdinIs(t, rec, "pingpong!", true)
}

// stdinIs waits until the "record" process got want on stdin, and saw EOF or not.
func stdinIs(t *testing.T, rec, want string, closed bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, eof := recorded(rec)
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
	rec := filepath.Join(t.TempDir(), "stdin")
	h.create("c", "sleep")
	h.start("c", "")
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec("record", rec), Stdin: fifo}); err != nil {
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
		if _, closed := recorded(rec); closed {
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
	withTerminal(t, b)
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: b, Terminal: true}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "")
	if _, err := h.s.ResizePty(h.ctx, &taskAPI.ResizePtyRequest{ID: "c", Width: 120, Height: 50}); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range h.env.Agent.Resizes() {
		found = found || (r.ContainerId == "c" && r.Columns == 120 && r.Rows == 50)
	}
	if !found {
		t.Fatalf("no resize reached the agent: %v", h.env.Agent.Resizes())
	}
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "plain", Spec: execSpec("sleep")}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "plain")
	// runc's shim takes a resize of a process without a terminal as a
	// no-op; so does kata-go, without asking the agent.
	calls := len(h.env.Agent.Calls())
	if _, err := h.s.ResizePty(h.ctx, &taskAPI.ResizePtyRequest{ID: "c", ExecID: "plain", Width: 1, Height: 1}); err != nil {
		t.Fatalf("resize without a terminal: %v", err)
	}
	for _, c := range h.env.Agent.Calls()[calls:] {
		if strings.HasPrefix(c, "TtyWinResize") {
			t.Fatalf("a resize without a terminal reached the agent: %v", c)
		}
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

// withTerminal sets process.terminal in a bundle's spec, as containerd
// writes it for a task with a terminal.
func withTerminal(t *testing.T, bundle string) {
	t.Helper()
	p := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	s.Process.Terminal = true
	if b, err = json.Marshal(&s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
