package shimv2

import (
	"context"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	tasktypes "github.com/containerd/containerd/api/types/task"

	"github.com/kata-go/kata-go/pkg/sandbox"
)

func (s *service) State(ctx context.Context, r *taskAPI.StateRequest) (*taskAPI.StateResponse, error) {
	t, p, err := s.getProcess(r.ID, r.ExecID)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	io := t.io
	if r.ExecID != "" {
		io = t.execIO[r.ExecID]
	}
	t.mu.Unlock()
	resp := &taskAPI.StateResponse{
		ID: r.ID, Bundle: t.bundle, Pid: t.pid, Status: tasktypes.Status_CREATED,
		Stdin: io.Stdin, Stdout: io.Stdout, Stderr: io.Stderr, Terminal: io.Terminal, ExecID: r.ExecID,
	}
	if r.ExecID != "" {
		resp.ID = r.ExecID
	}
	switch p.ReportedState() {
	case sandbox.StateRunning:
		resp.Status = tasktypes.Status_RUNNING
	case sandbox.StatePaused:
		resp.Status = tasktypes.Status_PAUSED
	case sandbox.StateStopped, sandbox.StateDeleted:
		// The status is set before the state moves (Process.finish).
		st := p.Status()
		resp.Status, resp.ExitStatus, resp.ExitedAt = tasktypes.Status_STOPPED, st.Code, ts(st.At)
	}
	return resp, nil
}

func (s *service) Pids(ctx context.Context, r *taskAPI.PidsRequest) (*taskAPI.PidsResponse, error) {
	t, err := s.getTask(r.ID)
	if err != nil {
		return nil, err
	}
	pids, err := t.c.Pids(ctx)
	if err != nil {
		return nil, errToGRPC(err)
	}
	// These stay guest pids, unlike every other pid the shim reports:
	// they are what `ctr task ps` shows and mean something only inside the
	// VM (containerd does not signal or open them). Each was checked to be
	// a possible pid, not that the agent told the truth about it.
	resp := &taskAPI.PidsResponse{}
	for _, pid := range pids {
		resp.Processes = append(resp.Processes, &tasktypes.ProcessInfo{Pid: pid})
	}
	return resp, nil
}
