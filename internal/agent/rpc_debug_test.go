package agent

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// Without the host's flag on the kernel command line the agent serves no
// debug shell, whatever the host asks.
func TestDebugShellNeedsTheHostsFlag(t *testing.T) {
	s := newTestService(t)
	s.debug.enabled = func() bool { return false }
	_, err := s.StartDebugShell(context.Background(), &agentapi.StartDebugShellRequest{Rows: 24, Cols: 80})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("StartDebugShell without the flag: %v, want PermissionDenied", err)
	}
	for _, call := range []func() error{
		func() error {
			_, err := s.DebugShellRead(context.Background(), &agentapi.DebugShellReadRequest{Id: "debug-1"})
			return err
		},
		func() error {
			_, err := s.DebugShellKill(context.Background(), &agentapi.DebugShellRequest{Id: "debug-1"})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.NotFound {
			t.Errorf("a call on a shell that was never started: %v, want NotFound", err)
		}
	}
}

// A debug shell is a real shell on a terminal: input reaches it, a resize
// reaches its terminal, its output reads to EOF, its exit status comes
// back, and Kill forgets it.
func TestDebugShellRoundTrip(t *testing.T) {
	if _, err := os.Stat(debugShellPath); err != nil {
		t.Skipf("no %s on this host (apt-get install busybox-static): %v", debugShellPath, err)
	}
	s := newTestService(t)
	ex := s.exits.(*hostExits)
	s.debug.enabled = func() bool { return true }
	ctx := context.Background()
	r, err := s.StartDebugShell(ctx, &agentapi.StartDebugShellRequest{Rows: 24, Cols: 80})
	if err != nil {
		t.Fatal(err)
	}
	id := r.GetId()
	sh, err := s.debug.get(id)
	if err != nil {
		t.Fatal(err)
	}
	// The fake exit source does not reap: stand in for PID 1's reaper.
	go func() {
		var ws unix.WaitStatus
		if _, err := unix.Wait4(sh.pid, &ws, 0, nil); err == nil {
			ex.deliver(sh.pid, syscall.WaitStatus(ws))
		}
	}()
	if _, err := s.DebugShellResize(ctx, &agentapi.DebugShellResizeRequest{Id: id, Rows: 33, Cols: 111}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DebugShellWrite(ctx, &agentapi.DebugShellWriteRequest{Id: id, Data: []byte("stty size; exit 3\n")}); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for {
		rr, err := s.DebugShellRead(ctx, &agentapi.DebugShellReadRequest{Id: id, Len: 4096})
		if err != nil {
			t.Fatal(err)
		}
		if rr.GetEof() {
			break
		}
		out.Write(rr.GetData())
	}
	if !strings.Contains(out.String(), "33 111") {
		t.Errorf("the resize did not reach the shell's terminal:\n%q", out.String())
	}
	w, err := s.DebugShellWait(ctx, &agentapi.DebugShellRequest{Id: id})
	if err != nil || w.GetExitStatus() != 3 {
		t.Fatalf("wait: %v, %v; want status 3", w, err)
	}
	if _, err := s.DebugShellKill(ctx, &agentapi.DebugShellRequest{Id: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.debug.get(id); status.Code(err) != codes.NotFound {
		t.Errorf("shell still known after Kill: %v", err)
	}
}
