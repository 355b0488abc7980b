package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/containerd/console"
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/sandbox"
	"github.com/kata-go/kata-go/pkg/shimv2"
)

// runExec opens a shell in a running pod's VM, outside every container,
// through the pod's shim. Its exit status is the shell's.
func runExec(args []string) int {
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file, for runtime.state_root (default: $"+config.EnvPath+", else "+config.DefaultPath+")")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: containerd-shim-kata-v2 exec [-config FILE] SANDBOX-ID")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "exec:", err)
		return 1
	}
	dir, err := sandbox.FindStateDir(cfg.Runtime.StateRoot, fs.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, "exec:", err)
		return 1
	}
	// With a terminal: raw mode, its size, and its resizes. Without one
	// (a script) the guest shell still gets a 24x80 terminal.
	var rows, cols uint16 = 24, 80
	cur, err := console.ConsoleFromFile(os.Stdin)
	if err == nil {
		if sz, err := cur.Size(); err == nil && sz.Height > 0 {
			rows, cols = sz.Height, sz.Width
		}
		if err := cur.SetRaw(); err == nil {
			defer cur.Reset()
		}
	}
	dc, err := shimv2.DialDebugShell(dir, rows, cols)
	if err != nil {
		if cur != nil {
			cur.Reset()
		}
		fmt.Fprintln(os.Stderr, "exec:", err)
		return 1
	}
	defer dc.Close()
	if cur != nil {
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, unix.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if sz, err := cur.Size(); err == nil {
					_ = dc.Resize(sz.Height, sz.Width)
				}
			}
		}()
	}
	go func() { _, _ = io.Copy(dc, os.Stdin) }()
	status, err := dc.Copy(os.Stdout)
	if err != nil {
		if cur != nil {
			cur.Reset()
		}
		fmt.Fprintln(os.Stderr, "\nexec:", err)
		return 1
	}
	return status
}
