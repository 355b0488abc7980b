package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/creack/pty"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// debugShellPath is the static busybox mkinitrd puts in the initrd. Its
// shell finds its applets without PATH (Debian builds it standalone).
const debugShellPath = "/bin/busybox"

const (
	maxDebugShells = 4
	maxDebugRead   = 64 << 10
	maxDebugWrite  = 64 << 10
)

// debugShells are the running debug shells. The shim refuses exec unless
// the operator set debug_console = true; the agent refuses too unless the
// host booted it with agentapi.DebugConsoleParam, so one bug on the host
// side is not enough to open a root shell in the guest.
type debugShells struct {
	enabled func() bool
	// mu guards shells and next.
	mu     sync.Mutex
	shells map[string]*debugShell
	next   int
}

type debugShell struct {
	pty *os.File
	pid int
	// exited is closed once status is set.
	exited chan struct{}
	status exitStatus
}

func newDebugShells() *debugShells {
	return &debugShells{enabled: cmdlineHas(agentapi.DebugConsoleParam), shells: map[string]*debugShell{}}
}

// cmdlineHas reports whether the kernel command line has word.
func cmdlineHas(word string) func() bool {
	return func() bool {
		b, err := os.ReadFile("/proc/cmdline")
		if err != nil {
			return false
		}
		for _, f := range strings.Fields(string(b)) {
			if f == word {
				return true
			}
		}
		return false
	}
}

func (d *debugShells) get(id string) (*debugShell, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sh, ok := d.shells[id]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "debug shell %q not found", id)
	}
	return sh, nil
}

func winsize(rows, cols uint32) *pty.Winsize {
	return &pty.Winsize{Rows: uint16(min(rows, 1000)), Cols: uint16(min(cols, 1000))}
}

func (s *service) StartDebugShell(ctx context.Context, r *agentapi.StartDebugShellRequest) (*agentapi.DebugShellResponse, error) {
	d := s.debug
	if !d.enabled() {
		return nil, status.Errorf(codes.PermissionDenied, "debug shell: not enabled by the host at boot (%s not on the kernel command line)", agentapi.DebugConsoleParam)
	}
	d.mu.Lock()
	if len(d.shells) >= maxDebugShells {
		d.mu.Unlock()
		return nil, status.Errorf(codes.ResourceExhausted, "debug shell: %d already running", maxDebugShells)
	}
	d.next++
	id := fmt.Sprintf("debug-%d", d.next)
	d.mu.Unlock()

	cmd := exec.Command(debugShellPath, "sh")
	cmd.Dir = "/"
	cmd.Env = []string{"HOME=/", "TERM=xterm", "PS1=kata-go-guest# ", "PATH=/bin:/sbin:/usr/bin:/usr/sbin"}
	// The reaper reaps every child: watch the pid before it can exit.
	s.exits.hold()
	f, err := pty.StartWithSize(cmd, winsize(r.Rows, r.Cols))
	if err != nil {
		s.exits.release()
		return nil, status.Errorf(codes.Internal, "debug shell: start %s: %v", debugShellPath, err)
	}
	exit := s.exits.watch(cmd.Process.Pid)
	s.exits.release()
	Logf("debug shell %s started (pid %d)", id, cmd.Process.Pid)

	sh := &debugShell{pty: f, pid: cmd.Process.Pid, exited: make(chan struct{})}
	go func() {
		sh.status = <-exit
		Logf("debug shell %s exited with status %d", id, sh.status.status)
		close(sh.exited)
	}()
	d.mu.Lock()
	d.shells[id] = sh
	d.mu.Unlock()
	return &agentapi.DebugShellResponse{Id: id}, nil
}

func (s *service) DebugShellWrite(ctx context.Context, r *agentapi.DebugShellWriteRequest) (*agentapi.Empty, error) {
	sh, err := s.debug.get(r.Id)
	if err != nil {
		return nil, err
	}
	if len(r.Data) > maxDebugWrite {
		return nil, status.Errorf(codes.InvalidArgument, "debug shell write: %d bytes, at most %d", len(r.Data), maxDebugWrite)
	}
	if _, err := sh.pty.Write(r.Data); err != nil {
		return nil, status.Errorf(codes.Unavailable, "debug shell write: %v", err)
	}
	return &agentapi.Empty{}, nil
}

func (s *service) DebugShellRead(ctx context.Context, r *agentapi.DebugShellReadRequest) (*agentapi.DebugShellReadResponse, error) {
	sh, err := s.debug.get(r.Id)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, min(max(r.Len, 1), maxDebugRead))
	n, err := sh.pty.Read(buf)
	if n > 0 {
		return &agentapi.DebugShellReadResponse{Data: buf[:n]}, nil
	}
	// A pty master reads EIO once the shell and its children closed it.
	if err != nil && (errors.Is(err, io.EOF) || isEIO(err) || errors.Is(err, os.ErrClosed)) {
		return &agentapi.DebugShellReadResponse{Eof: true}, nil
	}
	return nil, status.Errorf(codes.Internal, "debug shell read: %v", err)
}

func (s *service) DebugShellResize(ctx context.Context, r *agentapi.DebugShellResizeRequest) (*agentapi.Empty, error) {
	sh, err := s.debug.get(r.Id)
	if err != nil {
		return nil, err
	}
	if err := pty.Setsize(sh.pty, winsize(r.Rows, r.Cols)); err != nil {
		return nil, status.Errorf(codes.Internal, "debug shell resize: %v", err)
	}
	return &agentapi.Empty{}, nil
}

func (s *service) DebugShellWait(ctx context.Context, r *agentapi.DebugShellRequest) (*agentapi.DebugShellWaitResponse, error) {
	sh, err := s.debug.get(r.Id)
	if err != nil {
		return nil, err
	}
	select {
	case <-sh.exited:
		return &agentapi.DebugShellWaitResponse{ExitStatus: sh.status.status}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// DebugShellKill ends a shell (and, by closing its terminal, whatever it
// left running) and forgets it. The host calls it when its operator has
// gone, or once the exit status and the output's end were read.
func (s *service) DebugShellKill(ctx context.Context, r *agentapi.DebugShellRequest) (*agentapi.Empty, error) {
	d := s.debug
	d.mu.Lock()
	sh, ok := d.shells[r.Id]
	delete(d.shells, r.Id)
	d.mu.Unlock()
	if !ok {
		return nil, status.Errorf(codes.NotFound, "debug shell %q not found", r.Id)
	}
	select {
	case <-sh.exited:
	default:
		// The shell leads its own session (pty.Start sets Setsid): its
		// process group is its pid.
		_ = unix.Kill(-sh.pid, unix.SIGKILL)
	}
	// Closing the master hangs up the terminal: the session's other
	// processes get SIGHUP.
	sh.pty.Close()
	Logf("debug shell %s closed", r.Id)
	return &agentapi.Empty{}, nil
}
