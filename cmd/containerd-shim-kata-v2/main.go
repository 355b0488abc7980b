// Command containerd-shim-kata-v2 is kata-go's containerd shim: one per
// pod, running the pod's containers inside a VM. Run by an operator it
// also answers check, env, exec and monitor (see docs/operations.md).
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/containerd/containerd/runtime/v2/shim"

	"github.com/kata-go/kata-go/pkg/shimv2"
)

const runtimeName = "io.containerd.kata.v2"

// version is set by the linker.
var version = "dev"

func main() {
	// containerd always starts the shim with flags first (-namespace …
	// start, -info), so a bare first word is an operator's subcommand.
	if len(os.Args) > 1 {
		if cmd, ok := subcommands[os.Args[1]]; ok {
			os.Exit(cmd(os.Args[2:]))
		}
	}
	for _, a := range os.Args[1:] {
		switch a {
		case "-info", "--info":
			b, err := shimv2.RuntimeInfo(runtimeName, version)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			os.Stdout.Write(b)
			return
		}
	}
	shimv2.RegisterPlugin()
	// The shim reaps its own children (QEMU, virtiofsd) with os/exec: the
	// library's reaper would steal their exit statuses.
	shim.RunManager(context.Background(), shimv2.NewManager(runtimeName), func(c *shim.Config) {
		c.NoReaper = true
		c.NoSubreaper = true
	})
}
