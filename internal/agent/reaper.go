package agent

import (
	"os"
	"os/signal"
	"sync"

	"golang.org/x/sys/unix"
)

// exitStatus is how a process ended, in the shell's convention.
type exitStatus struct {
	status int32 // exit code, or 128+signal
	signal uint32
}

func statusFromWait(ws unix.WaitStatus) exitStatus {
	if ws.Signaled() {
		sig := uint32(ws.Signal())
		return exitStatus{status: 128 + int32(sig), signal: sig}
	}
	return exitStatus{status: int32(ws.ExitStatus())}
}

// exitSource delivers the exit of a process the agent started.
type exitSource interface {
	// hold stops reaping until release is called, so code that waits for its
	// own children (libcontainer's bootstrap) does not lose them to the reaper.
	hold()
	release()
	// watch must be called while held, before release, so no exit is missed.
	watch(pid int) <-chan exitStatus
}

// reaper is PID 1's child reaper. Every child, ours or reparented to us, is
// reaped with wait4(-1); exits of watched pids are delivered, the rest dropped.
type reaper struct {
	// mu is held exclusively by the reaping loop and by callers of hold;
	// it guards waiters.
	mu      sync.Mutex
	waiters map[int]chan exitStatus
	sigs    chan os.Signal
}

var _ exitSource = (*reaper)(nil)

func newReaper() *reaper {
	r := &reaper{waiters: map[int]chan exitStatus{}, sigs: make(chan os.Signal, 1)}
	signal.Notify(r.sigs, unix.SIGCHLD)
	go r.loop()
	return r
}

func (r *reaper) hold()    { r.mu.Lock() }
func (r *reaper) release() { r.mu.Unlock(); r.kick() }

func (r *reaper) kick() {
	select {
	case r.sigs <- unix.SIGCHLD:
	default:
	}
}

func (r *reaper) watch(pid int) <-chan exitStatus {
	ch := make(chan exitStatus, 1)
	r.waiters[pid] = ch
	return ch
}

func (r *reaper) loop() {
	for range r.sigs {
		r.mu.Lock()
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil || pid <= 0 {
				break
			}
			if ch, ok := r.waiters[pid]; ok {
				delete(r.waiters, pid)
				ch <- statusFromWait(ws)
			}
		}
		r.mu.Unlock()
	}
}
