package hypervisor

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// startDaemons starts one virtiofsd per virtio-fs shared directory and
// waits until each listens, since QEMU connects at startup.
func (q *QEMU) startDaemons(ctx context.Context, devices []Device) error {
	n := 0
	for _, d := range devices {
		sd, ok := d.(SharedDir)
		if !ok {
			continue
		}
		i := n
		n++
		if sd.Type != SharedFSVirtioFS {
			continue
		}
		sock := filepath.Join(q.cfg.StateDir, virtiofsdSocket(i))
		_ = os.Remove(sock)
		cmd := exec.Command(q.cfg.VirtiofsdPath, virtiofsdArgs(sock, sd.HostPath)...)
		out := newTailBuffer(4 << 10)
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		done, err := spawn(cmd)
		if err != nil {
			return fmt.Errorf("start virtiofsd %s: %w", q.cfg.VirtiofsdPath, err)
		}
		q.log.Info("virtiofsd started", "pid", cmd.Process.Pid, "source", sd.HostPath)
		q.mu.Lock()
		q.daemons = append(q.daemons, &daemon{cmd: cmd, done: done})
		q.mu.Unlock()
		if err := waitSocket(ctx, sock, done, 5*time.Second); err != nil {
			return fmt.Errorf("virtiofsd for %s: %w: %s", sd.HostPath, err, out.String())
		}
	}
	return nil
}

// virtiofsdArgs is the command line of the C virtiofsd (QEMU 7.2's).
//
// sandbox=namespace: once QEMU connects, the daemon forks a worker into new
// mount, pid and net namespaces, pivot_roots into the shared directory and
// applies its seccomp filter (always on in this virtiofsd; there is no
// option to turn it off), so a guest that exploits it sees no host
// filesystem, no host process and no network. Mounts the shim adds under
// the share later still reach it: the worker makes its mount tree MS_SLAVE
// (not private), and the exported directory is itself a slave of the
// shim's shared mount tree, so new mounts propagate in. Measured by
// TestHostileGuestVirtiofsSeesLaterMounts.
func virtiofsdArgs(sock, source string) []string {
	return []string{
		"--socket-path=" + sock,
		"-o", "source=" + source,
		"-o", "cache=auto",
		"-o", "sandbox=namespace",
		"-o", "log_level=warn",
		"--rlimit-nofile=65536",
	}
}

// daemon is a helper process of the VM.
type daemon struct {
	cmd  *exec.Cmd
	done <-chan error // receives the exit once
}

func waitSocket(ctx context.Context, path string, died <-chan error, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if fi, err := os.Stat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return nil
		}
		select {
		case err := <-died:
			return fmt.Errorf("exited before listening: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no socket %s after %s", path, limit)
		}
	}
}

func (q *QEMU) killDaemons() {
	q.mu.Lock()
	daemons := q.daemons
	q.daemons = nil
	q.mu.Unlock()
	for _, d := range daemons {
		// In sandbox=namespace the daemon forks its sandboxed worker and
		// waits for it; the worker ends on its parent's death (PDEATHSIG)
		// or QEMU's disconnect, but asynchronously: wait for it too, so
		// that a stopped VM leaves no process behind.
		kids := childrenOf(d.cmd.Process.Pid)
		_ = d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(time.Second):
			_ = d.cmd.Process.Kill()
			<-d.done
		}
		for _, k := range kids {
			k.waitOrKill(time.Second)
		}
	}
}

// proc names a process by pid and start time, so a recycled pid is never
// mistaken for it.
type proc struct {
	pid   int
	start string
}

// procStat returns the state and start time of pid ("" if gone).
func procStat(pid int) (state, start string) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", ""
	}
	// Fields after the command, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return "", ""
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return "", ""
	}
	return f[0], f[19] // state and starttime: fields 3 and 22 of proc(5)
}

func childrenOf(pid int) []proc {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	var out []proc
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			if _, start := procStat(n); start != "" {
				out = append(out, proc{pid: n, start: start})
			}
		}
	}
	return out
}

// alive: same process, not yet a zombie (a zombie is done; whoever it was
// reparented to reaps it).
func (p proc) alive() bool {
	state, start := procStat(p.pid)
	return start == p.start && state != "Z" && state != "X"
}

func (p proc) waitGone(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for p.alive() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(2 * time.Millisecond)
	}
	return true
}

func (p proc) waitOrKill(limit time.Duration) {
	if !p.waitGone(limit) {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
		p.waitGone(limit)
	}
}
