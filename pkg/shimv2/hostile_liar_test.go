package shimv2

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/sandbox"
	"github.com/kata-go/kata-go/pkg/sandbox/sandboxtest"
)

// liar is a hostile agent: the in-memory fake with chosen answers
// replaced. A hook, when set, answers instead of the fake (it may call
// the fake for the honest answer and bend it); an RPC named in hang
// never answers, as a guest that stops replying, until the caller gives
// up. Hooks are set before the liar is used and never changed.
type liar struct {
	*sandboxtest.Agent

	createContainer func(context.Context, *agentapi.CreateContainerRequest) (*agentapi.CreateContainerResponse, error)
	execProcess     func(context.Context, *agentapi.ExecProcessRequest) (*agentapi.ExecProcessResponse, error)
	waitProcess     func(context.Context, *agentapi.ProcessRequest) (*agentapi.WaitProcessResponse, error)
	writeStdin      func(context.Context, *agentapi.WriteStreamRequest) (*agentapi.WriteStreamResponse, error)
	readStdout      func(context.Context, *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error)
	readStderr      func(context.Context, *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error)
	listProcesses   func(context.Context, *agentapi.ContainerRequest) (*agentapi.ListProcessesResponse, error)
	statsContainer  func(context.Context, *agentapi.ContainerRequest) (*agentapi.StatsContainerResponse, error)
	getOOMEvent     func(context.Context, *agentapi.Empty) (*agentapi.OOMEvent, error)

	// mu guards hang.
	mu   sync.Mutex
	hang map[string]bool
	// stalled counts calls held by hang right now.
	stalled atomic.Int64
}

var _ sandbox.Agent = (*liar)(nil)

func newLiar(a *sandboxtest.Agent) *liar { return &liar{Agent: a, hang: map[string]bool{}} }

// hangs makes the named RPCs stop answering (or answer again, with false).
func (l *liar) hangs(on bool, rpcs ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, r := range rpcs {
		l.hang[r] = on
	}
}

// stall holds a call to a hung RPC until its caller gives up.
func (l *liar) stall(ctx context.Context, rpc string) (bool, error) {
	l.mu.Lock()
	h := l.hang[rpc]
	l.mu.Unlock()
	if !h {
		return false, nil
	}
	l.stalled.Add(1)
	defer l.stalled.Add(-1)
	<-ctx.Done()
	return true, ctx.Err()
}

func (l *liar) CreateContainer(ctx context.Context, r *agentapi.CreateContainerRequest) (*agentapi.CreateContainerResponse, error) {
	if hung, err := l.stall(ctx, "CreateContainer"); hung {
		return nil, err
	}
	if l.createContainer != nil {
		return l.createContainer(ctx, r)
	}
	return l.Agent.CreateContainer(ctx, r)
}

func (l *liar) StartContainer(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	if hung, err := l.stall(ctx, "StartContainer"); hung {
		return nil, err
	}
	return l.Agent.StartContainer(ctx, r)
}

func (l *liar) RemoveContainer(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	if hung, err := l.stall(ctx, "RemoveContainer"); hung {
		return nil, err
	}
	return l.Agent.RemoveContainer(ctx, r)
}

func (l *liar) PauseContainer(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	if hung, err := l.stall(ctx, "PauseContainer"); hung {
		return nil, err
	}
	return l.Agent.PauseContainer(ctx, r)
}

func (l *liar) ResumeContainer(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.Empty, error) {
	if hung, err := l.stall(ctx, "ResumeContainer"); hung {
		return nil, err
	}
	return l.Agent.ResumeContainer(ctx, r)
}

func (l *liar) UpdateContainer(ctx context.Context, r *agentapi.UpdateContainerRequest) (*agentapi.Empty, error) {
	if hung, err := l.stall(ctx, "UpdateContainer"); hung {
		return nil, err
	}
	return l.Agent.UpdateContainer(ctx, r)
}

func (l *liar) StatsContainer(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.StatsContainerResponse, error) {
	if hung, err := l.stall(ctx, "StatsContainer"); hung {
		return nil, err
	}
	if l.statsContainer != nil {
		return l.statsContainer(ctx, r)
	}
	return l.Agent.StatsContainer(ctx, r)
}

func (l *liar) ListProcesses(ctx context.Context, r *agentapi.ContainerRequest) (*agentapi.ListProcessesResponse, error) {
	if hung, err := l.stall(ctx, "ListProcesses"); hung {
		return nil, err
	}
	if l.listProcesses != nil {
		return l.listProcesses(ctx, r)
	}
	return l.Agent.ListProcesses(ctx, r)
}

func (l *liar) ExecProcess(ctx context.Context, r *agentapi.ExecProcessRequest) (*agentapi.ExecProcessResponse, error) {
	if hung, err := l.stall(ctx, "ExecProcess"); hung {
		return nil, err
	}
	if l.execProcess != nil {
		return l.execProcess(ctx, r)
	}
	return l.Agent.ExecProcess(ctx, r)
}

func (l *liar) SignalProcess(ctx context.Context, r *agentapi.SignalProcessRequest) (*agentapi.Empty, error) {
	if hung, err := l.stall(ctx, "SignalProcess"); hung {
		return nil, err
	}
	return l.Agent.SignalProcess(ctx, r)
}

func (l *liar) WaitProcess(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.WaitProcessResponse, error) {
	if hung, err := l.stall(ctx, "WaitProcess"); hung {
		return nil, err
	}
	if l.waitProcess != nil {
		return l.waitProcess(ctx, r)
	}
	return l.Agent.WaitProcess(ctx, r)
}

func (l *liar) WriteStdin(ctx context.Context, r *agentapi.WriteStreamRequest) (*agentapi.WriteStreamResponse, error) {
	if hung, err := l.stall(ctx, "WriteStdin"); hung {
		return nil, err
	}
	if l.writeStdin != nil {
		return l.writeStdin(ctx, r)
	}
	return l.Agent.WriteStdin(ctx, r)
}

func (l *liar) CloseStdin(ctx context.Context, r *agentapi.ProcessRequest) (*agentapi.Empty, error) {
	if hung, err := l.stall(ctx, "CloseStdin"); hung {
		return nil, err
	}
	return l.Agent.CloseStdin(ctx, r)
}

func (l *liar) ReadStdout(ctx context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
	if hung, err := l.stall(ctx, "ReadStdout"); hung {
		return nil, err
	}
	if l.readStdout != nil {
		return l.readStdout(ctx, r)
	}
	return l.Agent.ReadStdout(ctx, r)
}

func (l *liar) ReadStderr(ctx context.Context, r *agentapi.ReadStreamRequest) (*agentapi.ReadStreamResponse, error) {
	if hung, err := l.stall(ctx, "ReadStderr"); hung {
		return nil, err
	}
	if l.readStderr != nil {
		return l.readStderr(ctx, r)
	}
	return l.Agent.ReadStderr(ctx, r)
}

func (l *liar) TtyWinResize(ctx context.Context, r *agentapi.TtyWinResizeRequest) (*agentapi.Empty, error) {
	if hung, err := l.stall(ctx, "TtyWinResize"); hung {
		return nil, err
	}
	return l.Agent.TtyWinResize(ctx, r)
}

func (l *liar) GetOOMEvent(ctx context.Context, r *agentapi.Empty) (*agentapi.OOMEvent, error) {
	if hung, err := l.stall(ctx, "GetOOMEvent"); hung {
		return nil, err
	}
	if l.getOOMEvent != nil {
		return l.getOOMEvent(ctx, r)
	}
	return l.Agent.GetOOMEvent(ctx, r)
}

func (l *liar) DestroySandbox(ctx context.Context, r *agentapi.DestroySandboxRequest) (*agentapi.Empty, error) {
	if hung, err := l.stall(ctx, "DestroySandbox"); hung {
		return nil, err
	}
	return l.Agent.DestroySandbox(ctx, r)
}
