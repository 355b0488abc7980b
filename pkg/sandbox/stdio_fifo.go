package sandbox

import (
	"context"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fifoOut is a stdout or stderr FIFO the shim writes, opened read-write
// (see openHostIO).
//
// Why the shim waits for its reader: containerd 2.x's client, on Delete,
// cancels its IO before waiting for it, and cancelling closes its FIFO
// read ends (pkg/cio copyIO). Output still in a FIFO when the client
// learns of the exit is lost: up to 64 KiB at the end of a `ctr run`.
// So a process's exit is reported only once its reader has taken what
// the shim wrote, or has stopped taking it (nobody reads: the FIFO keeps
// it for a later re-attach, and the exit is not held back for long).
type fifoOut struct {
	*os.File
}

// fifoStall is how long a FIFO may keep unread output without its reader
// taking any before the exit is reported anyway.
var fifoStall = time.Second

// waitRead returns once the FIFO is empty, once its reader has taken
// nothing for fifoStall, or when ctx ends.
func (f fifoOut) waitRead(ctx context.Context) {
	last, err := f.unread()
	if err != nil || last == 0 {
		return
	}
	stalled := time.Now()
	pause := time.Millisecond
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		n, err := f.unread()
		if err != nil || n == 0 {
			return
		}
		if n < last {
			last, stalled = n, time.Now()
		} else if time.Since(stalled) >= fifoStall {
			return
		}
		pause = min(2*pause, 20*time.Millisecond)
	}
}

// unread is how many bytes the FIFO holds that no reader has taken.
func (f fifoOut) unread() (int, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCINQ) // FIONREAD
	}); err != nil {
		return 0, err
	}
	return n, ierr
}
