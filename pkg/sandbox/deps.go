package sandbox

import (
	"context"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/agentclient"
	"github.com/kata-go/kata-go/pkg/hypervisor"
	"github.com/kata-go/kata-go/pkg/network"
)

// Agent is the sandbox's view of the agent connection.
type Agent interface {
	agentapi.AgentService
	// Closed is closed when the connection is gone.
	Closed() <-chan struct{}
	Close() error
}

var _ Agent = (*agentclient.Client)(nil)

// Deps are the parts a sandbox is built from; unit tests swap in fakes.
type Deps struct {
	NewHypervisor func(hypervisor.Config) (hypervisor.Hypervisor, error)
	DialAgent     func(context.Context, hypervisor.AgentAddress) (Agent, error)
	HostFS        HostFS
	// WireNetwork joins a pod network namespace to the VM.
	WireNetwork func(netns string, model network.Model) (*network.Pod, error)
}

// DefaultDeps are QEMU and the ttrpc agent client.
func DefaultDeps() Deps {
	return Deps{
		NewHypervisor: func(c hypervisor.Config) (hypervisor.Hypervisor, error) { return hypervisor.NewQEMU(c) },
		HostFS:        realFS{},
		WireNetwork:   network.Wire,
		DialAgent: func(ctx context.Context, a hypervisor.AgentAddress) (Agent, error) {
			return agentclient.Dial(ctx, agentclient.Address{
				Transport: agentclient.Transport(a.Transport), Path: a.Path, CID: a.CID, Port: a.Port, Secret: a.Secret,
			})
		},
	}
}
