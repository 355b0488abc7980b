// Command agent is PID 1 of a kata-go guest (see internal/agent). Started as
// "agent init" it is instead libcontainer's container init (like "runc init").
package main

import (
	"os"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // setns before the Go runtime starts

	"github.com/kata-go/kata-go/internal/agent"
)

// version is set by the linker.
var version = "dev"

func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init() // never returns
	}
}

func main() {
	if err := agent.Run(version); err != nil {
		agent.Logf("fatal: %v", err)
		if os.Getpid() == 1 {
			agent.PowerOff()
		}
		os.Exit(1)
	}
}
