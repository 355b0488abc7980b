package hypervisor

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// QEMU runs a VM with qemu-system-x86_64 and, for virtio-fs, virtiofsd.
type QEMU struct {
	cfg Config
	log *slog.Logger

	// mu guards every field below, exited included (a retried start
	// replaces it).
	mu      sync.Mutex
	devices []Device
	cmd     *exec.Cmd
	daemons []*daemon
	qmp     *qmp
	started bool
	stopped bool
	exitErr error
	stderr  *tailBuffer
	console *console
	// accel is the accelerator Start chose, and why.
	accel    Accelerator
	accelWhy string

	exited chan struct{}
}

var _ Hypervisor = (*QEMU)(nil)

// NewQEMU checks cfg and returns an unstarted VM.
func NewQEMU(cfg Config) (*QEMU, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &QEMU{cfg: cfg, log: cfg.Logger, exited: make(chan struct{})}, nil
}

func (q *QEMU) AddDevice(d Device) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.started {
		return errors.New("add device: the VM is already started and this machine has no hotplug")
	}
	if sd, ok := d.(SharedDir); ok {
		if sd.Type != SharedFSVirtioFS && sd.Type != SharedFS9P {
			return fmt.Errorf("shared fs type %q: want virtio-fs or 9p", sd.Type)
		}
		if sd.Type == SharedFSVirtioFS {
			if _, err := os.Stat(q.cfg.VirtiofsdPath); err != nil {
				return fmt.Errorf("virtiofsd %q: %w", q.cfg.VirtiofsdPath, err)
			}
		}
	}
	q.devices = append(q.devices, d)
	return nil
}

func (q *QEMU) Capabilities() Capabilities {
	_, err := os.Stat("/dev/vhost-vsock")
	return Capabilities{Hotplug: q.cfg.MachineType == "q35", VirtioFS: true, NineP: true, Vsock: err == nil}
}

func (q *QEMU) AgentAddress() AgentAddress {
	if q.cfg.Transport == TransportVsock {
		return AgentAddress{Transport: TransportVsock, CID: q.vsockCID(), Port: 1024, Secret: q.cfg.AgentSecret}
	}
	return AgentAddress{Transport: TransportSerial, Path: filepath.Join(q.cfg.StateDir, agentSocket), Secret: q.cfg.AgentSecret}
}

// vsockCID derives a context id from the state directory; CIDs 0-2 are reserved.
func (q *QEMU) vsockCID() uint32 {
	return 3 + stateHash(q.cfg.StateDir)%(1<<31)
}

// ConsoleLog is the newest part of the console: at most consoleCap bytes,
// the part before it in ConsoleLog()+".1".
func (q *QEMU) ConsoleLog() string { return filepath.Join(q.cfg.StateDir, consoleFile) }

// ConsoleTail returns the last n lines the guest wrote to its console (at
// most 4 KiB), from memory: no file to read, whatever happened to the disk.
func (q *QEMU) ConsoleTail(n int) string {
	q.mu.Lock()
	c := q.console
	q.mu.Unlock()
	if c == nil {
		return ""
	}
	return c.lastLines(n)
}

func (q *QEMU) Exited() <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.exited
}

func (q *QEMU) ExitErr() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.exitErr
}

func (q *QEMU) Pids() []int {
	q.mu.Lock()
	defer q.mu.Unlock()
	var pids []int
	if q.cmd != nil && q.cmd.Process != nil {
		pids = append(pids, q.cmd.Process.Pid)
	}
	for _, d := range q.daemons {
		pids = append(pids, d.cmd.Process.Pid)
	}
	return pids
}

func (q *QEMU) Start(ctx context.Context) error {
	q.mu.Lock()
	if q.started {
		q.mu.Unlock()
		return errors.New("VM already started")
	}
	q.started = true
	devices := append([]Device(nil), q.devices...)
	q.mu.Unlock()

	if err := q.cfg.validateTemplate(devices); err != nil {
		return err
	}
	accel, why, err := resolveAccel(q.cfg.Accelerator)
	if err != nil {
		return err
	}
	q.log.Info("accelerator chosen", "accel", accel, "reason", why)
	q.mu.Lock()
	q.accel, q.accelWhy = accel, why
	q.mu.Unlock()
	l := &launch{cfg: &q.cfg, accel: accel, tscKHz: hostTSCkHz(), devices: devices, vsockCID: q.vsockCID()}
	if l.runAs, err = q.chooseRunAs(devices); err != nil {
		return err
	}
	// A clone's agent already holds the template's secret.
	if len(q.cfg.AgentSecret) > 0 && q.cfg.Template.Mode != FromTemplate {
		path, err := writeSecret(q.cfg.StateDir, q.cfg.AgentSecret)
		if err != nil {
			return err
		}
		// QEMU reads the file while it starts; once QMP answers (or the
		// start failed) it has no further use and leaves the disk.
		defer os.Remove(path)
		l.secretPath = path
	}
	// Under TCG every guest instruction is translated: Nehalem (x86-64-v2,
	// what current distributions require) avoids the AVX paths that "max"
	// makes Go and libc take, which TCG emulates slowly. Measured here: exec
	// latency 137 -> 98 ms, VM boot 935 -> 884 ms.
	l.cpu = "Nehalem"
	if accel == AccelKVM {
		l.cpu = "host"
	}
	if q.cfg.CPUModel != "" {
		l.cpu = q.cfg.CPUModel
	}
	if err := q.startDaemons(ctx, devices); err != nil {
		q.killAll()
		return err
	}
	err = q.startQEMU(ctx, l)
	if err != nil && accel == AccelKVM {
		// Some KVM hosts (PVM among them) reject the host model's
		// arch-capabilities MSR; try once more without it.
		q.log.Warn("qemu failed with -cpu host, retrying without arch-capabilities", "err", err)
		q.mu.Lock()
		q.exited = make(chan struct{})
		q.exitErr = nil
		q.mu.Unlock()
		l.cpu = "host,-arch-capabilities"
		err = q.startQEMU(ctx, l)
	}
	if err == nil && q.cfg.Template.Mode == FromTemplate {
		err = q.restoreState(ctx)
	}
	if err != nil {
		q.killAll()
		return err
	}
	return nil
}

// chooseRunAs returns the uid:gid QEMU drops to, or "" when it must keep
// root: 9p with security_model=none has QEMU itself read and write the
// container's files, owned by root and by any uid the image uses, so an
// unprivileged QEMU would break them. virtio-fs leaves files to virtiofsd.
func (q *QEMU) chooseRunAs(devices []Device) (string, error) {
	for _, d := range devices {
		if sd, ok := d.(SharedDir); ok && sd.Type == SharedFS9P {
			q.log.Warn("qemu keeps root: 9p (security_model=none) needs it to read and write the container's files; use virtio-fs for an unprivileged VMM")
			return "", nil
		}
	}
	id, err := runAsID(q.cfg.StateDir)
	if err != nil {
		return "", err
	}
	q.log.Info("qemu drops root", "uid", id, "gid", id)
	return fmt.Sprintf("%d:%d", id, id), nil
}

// writeSecret puts the agent secret where QEMU's -fw_cfg reads it: 0600,
// created afresh (O_EXCL) and never through a symlink (O_NOFOLLOW), so
// nothing planted in the state directory redirects or pre-opens it. A
// stale entry (a start killed before its cleanup) is removed first;
// Remove unlinks a symlink, never its target.
func writeSecret(dir string, secret []byte) (string, error) {
	path := filepath.Join(dir, secretFile)
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("agent secret file: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return "", fmt.Errorf("agent secret file: %w", err)
	}
	_, err = f.Write(secret)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("agent secret file: %w", err)
	}
	return path, nil
}

// startQEMU spawns QEMU and waits until QMP answers, or QEMU exits.
func (q *QEMU) startQEMU(ctx context.Context, l *launch) error {
	args := l.args()
	cmd := exec.Command(q.cfg.QEMUPath, args...)
	stderr := newTailBuffer(8 << 10)
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	// Pdeathsig ends QEMU with the shim, but only while QEMU keeps root:
	// the kernel clears it when -runas changes QEMU's uid. An unprivileged
	// QEMU outliving a crashed shim ends when the agent sees the shim's
	// connection drop and powers off, or at shim delete (recorded pids).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	consoleW, cons, err := startConsole(filepath.Join(q.cfg.StateDir, consoleFile), consoleCap, q.log, newGuestLog(q.log, q.cfg.Debug))
	if err != nil {
		return err
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, consoleW) // fd 3, consoleFD
	for _, d := range l.devices {
		if t, ok := d.(NetTap); ok {
			cmd.ExtraFiles = append(cmd.ExtraFiles, t.FDs...)
		}
	}
	q.log.Debug("starting qemu", "args", args)
	done, err := spawn(cmd)
	// QEMU holds its own copy now; ours would keep the console pipe open,
	// and its reader alive, after QEMU exits.
	consoleW.Close()
	if err != nil {
		<-cons.done
		return fmt.Errorf("start %s: %w", q.cfg.QEMUPath, err)
	}
	q.mu.Lock()
	q.cmd = cmd
	q.stderr = stderr
	q.console = cons
	exited := q.exited
	q.mu.Unlock()
	q.log.Info("qemu started", "pid", cmd.Process.Pid, "machine", q.cfg.MachineType, "cpu", l.cpu)
	go func() {
		err := <-done
		// The console reader sees EOF once QEMU's write end is gone; wait
		// for it so that Exited means the console log is complete and no
		// goroutine is left.
		<-cons.done
		q.mu.Lock()
		if q.stopped {
			q.exitErr = nil
		} else {
			q.exitErr = fmt.Errorf("qemu (pid %d) exited: %v: %s; guest console: %s",
				cmd.Process.Pid, err, stderr.String(), cons.lastLines(8))
		}
		q.mu.Unlock()
		close(exited)
	}()

	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	path := filepath.Join(q.cfg.StateDir, qmpSocket)
	for {
		m, err := dialQMP(qctx, path)
		if err == nil {
			q.mu.Lock()
			q.qmp = m
			q.mu.Unlock()
			return q.restrictSockets()
		}
		select {
		case <-exited:
			return q.ExitErr()
		case <-qctx.Done():
			return fmt.Errorf("qemu did not open its QMP socket: %w", err)
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// spawn starts cmd from a locked OS thread and waits for it there. Pdeathsig
// fires when the thread that forked dies, and Go may retire an unlocked
// thread at any time; this one lives exactly as long as the child.
func spawn(cmd *exec.Cmd) (<-chan error, error) {
	started := make(chan error)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}

func (q *QEMU) Stop(ctx context.Context) error {
	q.mu.Lock()
	if !q.started || q.stopped {
		q.mu.Unlock()
		return nil
	}
	q.stopped = true
	m := q.qmp
	q.qmp = nil
	cmd := q.cmd
	q.mu.Unlock()
	if cmd != nil {
		if m != nil {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			_, _ = m.execute(qctx, "quit", nil)
			cancel()
			m.close()
		}
		exited := q.Exited()
		select {
		case <-exited:
		case <-time.After(2 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	q.killDaemons()
	return nil
}

// killAll ends everything after a failed start.
func (q *QEMU) killAll() {
	q.mu.Lock()
	q.stopped = true
	cmd := q.cmd
	if q.qmp != nil {
		q.qmp.close()
		q.qmp = nil
	}
	q.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Kill()
		<-q.Exited()
	}
	q.killDaemons()
}

// restrictSockets makes the VM's control sockets owner-only: the agent
// channel and QMP must be reachable only by the shim (the state directory
// is 0700 as well, this guards against a looser one).
func (q *QEMU) restrictSockets() error {
	socks, _ := filepath.Glob(filepath.Join(q.cfg.StateDir, "*.sock"))
	for _, s := range socks {
		if err := os.Chmod(s, 0o600); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("restrict %s: %w", s, err)
		}
	}
	return nil
}

// stateHash spreads a VM's per-pod numbers (vsock CID, QEMU's uid) from
// its state directory: FNV-1a, stable across restarts of the shim.
func stateHash(dir string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(dir))
	return h.Sum32()
}
