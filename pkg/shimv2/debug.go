package shimv2

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/sandbox"
)

// Bounds on the agent calls a debug shell makes. The guest is untrusted:
// a call it does not answer ends the shell, never the shim.
const (
	debugStartTimeout = 30 * time.Second
	debugCallTimeout  = 10 * time.Second
	// debugDrain is how long output may trail the shell's exit (a
	// background job holding the terminal keeps it open forever).
	debugDrain = time.Second
)

// debugServer serves `containerd-shim-kata-v2 exec` on the pod's debug
// socket: every shell goes through the shim's one agent connection.
type debugServer struct {
	sb  *sandbox.Sandbox
	svc *service
	l   net.Listener
	// mu guards conns.
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// startDebug listens on the debug socket (0600 in the root-only state
// directory). It listens even when debug shells are off, so an operator
// who tries gets told why instead of "no such file".
func (s *service) startDebug(sb *sandbox.Sandbox) *debugServer {
	path := filepath.Join(sb.StateDir(), DebugSocketName)
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err == nil {
		err = os.Chmod(path, 0o600)
	}
	if err != nil {
		s.log.Warn("debug shell socket not served", "err", err)
		if l != nil {
			l.Close()
		}
		return nil
	}
	d := &debugServer{sb: sb, svc: s, l: l, conns: map[net.Conn]struct{}{}}
	d.wg.Go(d.accept)
	return d
}

func (d *debugServer) accept() {
	for {
		c, err := d.l.Accept()
		if err != nil {
			return
		}
		d.mu.Lock()
		d.conns[c] = struct{}{}
		d.mu.Unlock()
		d.wg.Go(func() {
			d.serve(c)
			d.mu.Lock()
			delete(d.conns, c)
			d.mu.Unlock()
			c.Close()
		})
	}
}

// close stops listening and ends every shell.
func (d *debugServer) close() {
	d.l.Close()
	d.mu.Lock()
	for c := range d.conns {
		c.Close()
	}
	d.mu.Unlock()
	d.wg.Wait()
}

// peer is who connected, for the audit log.
func peer(c net.Conn) (uid uint32, pid int32) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ^uint32(0), 0
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ^uint32(0), 0
	}
	var cred *unix.Ucred
	_ = raw.Control(func(fd uintptr) { cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) })
	if err != nil || cred == nil {
		return ^uint32(0), 0
	}
	return cred.Uid, cred.Pid
}

// ErrDebugConsoleDisabled is the refusal an operator sees.
var ErrDebugConsoleDisabled = errors.New("debug shell refused: debug_console is not enabled for this pod (set [agent] debug_console = true in the kata-go configuration and restart the pod; see docs/security.md for the risk)")

func (d *debugServer) serve(c net.Conn) {
	log := d.svc.log.With("sandbox_id", d.sb.ID)
	uid, pid := peer(c)
	w := newDebugWire(c)
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	var hello debugHello
	if err := w.readJSON(&hello); err != nil {
		log.Warn("debug shell: bad hello", "peer_uid", uid, "peer_pid", pid, "err", err)
		return
	}
	_ = c.SetDeadline(time.Time{})
	refuse := func(err error) {
		log.Warn("AUDIT debug shell refused", "peer_uid", uid, "peer_pid", pid, "reason", err)
		_ = w.writeJSON(debugHelloReply{Error: err.Error()})
	}
	if uid != 0 && int(uid) != os.Geteuid() {
		refuse(fmt.Errorf("debug shell refused: only root may open one (peer uid %d)", uid))
		return
	}
	if !d.sb.DebugConsole() {
		refuse(ErrDebugConsoleDisabled)
		return
	}
	agent := d.sb.Agent()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-d.sb.Dead():
			cancel()
		case <-ctx.Done():
		}
	}()
	sctx, scancel := context.WithTimeout(ctx, debugStartTimeout)
	r, err := agent.StartDebugShell(sctx, &agentapi.StartDebugShellRequest{Rows: uint32(hello.Rows), Cols: uint32(hello.Cols)})
	scancel()
	if err != nil {
		refuse(fmt.Errorf("debug shell: the agent did not start one: %w", err))
		return
	}
	id := r.GetId()
	if !agentapi.ValidID(id) {
		refuse(fmt.Errorf("debug shell: the agent answered a bad id %q", truncateID(id)))
		return
	}
	began := time.Now()
	log.Warn("AUDIT debug shell opened: a root shell in the guest, outside every container", "peer_uid", uid, "peer_pid", pid, "shell", id)
	if err := w.writeJSON(debugHelloReply{}); err != nil {
		d.kill(id)
		return
	}
	status, why := d.run(ctx, w, id)
	log.Warn("AUDIT debug shell closed", "peer_pid", pid, "shell", id, "exit_status", status, "after", time.Since(began).Round(time.Millisecond), "how", why)
}

// run copies between the operator and the shell until it exits (or the
// operator goes), sends the exit status and forgets the shell.
func (d *debugServer) run(ctx context.Context, w *debugWire, id string) (int32, string) {
	agent := d.sb.Agent()
	outDone := make(chan struct{})
	go func() { // guest → operator
		defer close(outDone)
		for {
			r, err := agent.DebugShellRead(ctx, &agentapi.DebugShellReadRequest{Id: id, Len: maxFrame})
			if err != nil || r.GetEof() {
				return
			}
			if len(r.GetData()) > maxFrame || w.writeFrame(frameData, r.GetData()) != nil {
				return
			}
		}
	}()
	inDone := make(chan error, 1)
	go func() { // operator → guest
		for {
			typ, p, err := w.readFrame()
			if err != nil {
				inDone <- err
				return
			}
			cctx, cancel := context.WithTimeout(ctx, debugCallTimeout)
			switch {
			case typ == frameData:
				_, err = agent.DebugShellWrite(cctx, &agentapi.DebugShellWriteRequest{Id: id, Data: p})
			case typ == frameResize && len(p) == 4:
				_, err = agent.DebugShellResize(cctx, &agentapi.DebugShellResizeRequest{
					Id: id, Rows: uint32(binary.BigEndian.Uint16(p)), Cols: uint32(binary.BigEndian.Uint16(p[2:])),
				})
			}
			cancel()
			if err != nil {
				inDone <- err
				return
			}
		}
	}()
	exited := make(chan int32, 1)
	go func() {
		r, err := agent.DebugShellWait(ctx, &agentapi.DebugShellRequest{Id: id})
		if err != nil {
			close(exited)
			return
		}
		exited <- r.GetExitStatus()
	}()
	select {
	case st, ok := <-exited:
		if !ok {
			d.kill(id)
			return -1, "the agent stopped answering"
		}
		select {
		case <-outDone:
		case <-time.After(debugDrain):
		}
		d.kill(id) // ends what the shell left holding its terminal
		<-outDone
		_ = w.writeFrame(frameExit, binary.BigEndian.AppendUint32(nil, uint32(st)))
		return st, "exited"
	case err := <-inDone:
		d.kill(id)
		<-outDone
		return -1, fmt.Sprintf("operator gone: %v", err)
	case <-ctx.Done():
		return -1, "the sandbox died"
	}
}

func (d *debugServer) kill(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), debugCallTimeout)
	defer cancel()
	_, _ = d.sb.Agent().DebugShellKill(ctx, &agentapi.DebugShellRequest{Id: id})
}
