// Package agent is PID 1 of a kata-go guest: it prepares the guest, finds its
// channel to the host and serves the agent API over ttrpc. It lives outside
// package main so host-side tests can run the real service over an in-memory
// connection, with a fake only at the libcontainer edge.
package agent

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

// Run boots the guest (when PID 1), waits for the host and serves until the
// channel fails. ver is reported by Check.
func Run(ver string) error {
	version = ver
	if os.Getpid() == 1 {
		if err := boot(); err != nil {
			return fmt.Errorf("boot: %w", err)
		}
	} else if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	started := uptime()
	r := newReaper()
	secret, err := readSecret(channel.SecretGuestPath)
	if err != nil {
		return err
	}
	raw, err := listen(10 * time.Second)
	if err != nil {
		return err
	}
	l := guard(raw, secret)
	// The shim is the VM's only client and the only holder of its secret:
	// once its connection is gone nobody can ever reach this agent again
	// (the host treats the drop as the pod's death too). Power off, so the
	// VMM exits even when the shim was killed and QEMU, having dropped
	// root, lost its parent-death signal.
	if os.Getpid() == 1 {
		l.whenHostHangsUp(func() {
			Logf("the host's connection is gone: powering off")
			PowerOff()
		})
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("ttrpc server: %w", err)
	}
	svc := newService(libctRunner{}, r, newGuestMounter(), started)
	svc.forTemplate = l.holdForTemplate
	svc.warmRoot = guestWarmRoot
	agentapi.RegisterAgentService(srv, svc)
	Logf("serving on %s at uptime %s", l.Addr(), started)
	return srv.Serve(context.Background(), l)
}

// PowerOff ends the VM: QEMU runs with -no-reboot, so a restart request
// becomes a clean VM exit the host sees at once (returning from PID 1 would
// panic the kernel instead).
func PowerOff() {
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
}

// Logf writes one agent log line to the console.
func Logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "kata-go-agent: "+format+"\n", args...)
}

// uptime reads CLOCK_BOOTTIME, the guest's time since the kernel started.
func uptime() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return 0
	}
	return time.Duration(ts.Nano())
}
