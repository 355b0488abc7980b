package agent

import (
	"fmt"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
)

// container is one OCI container in the guest and the processes started in it.
type container struct {
	id   string
	rt   containerRuntime
	spec *specs.Spec

	// mu guards procs and started.
	mu      sync.Mutex
	procs   map[string]*process // "" is the init process
	started bool
}

func (c *container) process(eid string) (*process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.procs[eid]
	if !ok {
		if eid == "" {
			return nil, errf(codes.NotFound, "container %q has no init process", c.id)
		}
		return nil, errf(codes.NotFound, "process %q not found in container %q", eid, c.id)
	}
	return p, nil
}

func (c *container) init() *process {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.procs[""]
}

// destroy kills everything in the container and frees its resources.
func (c *container) destroy() error {
	c.mu.Lock()
	procs := make([]*process, 0, len(c.procs))
	for _, p := range c.procs {
		procs = append(procs, p)
	}
	c.mu.Unlock()
	if init := c.init(); init != nil && !init.hasExited() {
		_ = c.rt.signal(9, true)
	}
	err := c.rt.destroy()
	for _, p := range procs {
		p.stdio.close()
	}
	if err != nil {
		return fmt.Errorf("destroy container %s: %w", c.id, err)
	}
	return nil
}
