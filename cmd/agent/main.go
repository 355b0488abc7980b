// Command agent is PID 1 of a kata-go guest. It prepares the guest, finds its
// channel to the host and serves the agent API over ttrpc. Started as
// "agent init" it is instead libcontainer's container init (like "runc init").
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // setns before the Go runtime starts
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
}

func main() {
	if err := run(); err != nil {
		logf("fatal: %v", err)
		if os.Getpid() == 1 {
			// Returning would panic the kernel; restart instead, which QEMU's
			// -no-reboot turns into a clean VM exit the host sees at once.
			unix.Sync()
			_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
		}
		os.Exit(1)
	}
}

func run() error {
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
			logf("the host's connection is gone: powering off")
			unix.Sync()
			_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART) // -no-reboot: QEMU exits
		})
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("ttrpc server: %w", err)
	}
	agentapi.RegisterAgentService(srv, newService(libctRunner{}, r, newGuestMounter(), started))
	logf("serving on %s at uptime %s", l.Addr(), started)
	return srv.Serve(context.Background(), l)
}

func logf(format string, args ...any) {
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
