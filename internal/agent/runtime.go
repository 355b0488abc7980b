package agent

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// runner creates containers. The real one is libcontainer; unit tests use a
// fake that runs plain host processes.
type runner interface {
	// create sets up the container and starts its init process up to the
	// point just before it execs the workload; it returns the init's pid.
	create(id string, spec *specs.Spec, io *stdio) (containerRuntime, int, error)
}

// containerRuntime is one created container.
type containerRuntime interface {
	// start lets the created init process exec the workload.
	start() error
	// exec starts another process in the container and returns its pid.
	exec(p *specs.Process, io *stdio) (int, error)
	signal(sig unix.Signal, all bool) error
	pause() error
	resume() error
	update(r *specs.LinuxResources) error
	stats() (*agentapi.StatsContainerResponse, error)
	pids() ([]int, error)
	// oom returns a channel that receives a value at every OOM kill.
	oom() (<-chan struct{}, error)
	destroy() error
}
