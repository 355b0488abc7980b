// Package shimv2 implements containerd's Task API v2 for kata-go: one shim
// per pod, every task a container in the pod's VM. It forwards to
// pkg/sandbox and never drives the VMM itself.
package shimv2

import (
	"context"
	"log/slog"
	"os"
	"sync"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/pkg/shutdown"
	"github.com/containerd/containerd/runtime/v2/shim"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"

	"github.com/kata-go/kata-go/pkg/metrics"
	"github.com/kata-go/kata-go/pkg/sandbox"
)

// service is the Task API of one pod.
type service struct {
	shutdown shutdown.Service
	events   *eventQueue
	log      *slog.Logger
	deps     sandbox.Deps
	started  time.Time // when this shim server started, for boot phases

	// mu guards sb, sandboxID and tasks. It is never held across a call
	// into the VM or agent: a slow or dead VM must not stall other RPCs.
	mu        sync.Mutex
	sb        *sandbox.Sandbox
	sandboxID string
	tasks     map[string]*task
	// metrics and debug are the operator's endpoints (operator.go).
	metrics *metrics.Server
	debug   *debugServer
}

var _ taskAPI.TaskService = (*service)(nil)

// NewTaskService is the shim library's entry point for the task plugin.
func NewTaskService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service) (taskAPI.TaskService, error) {
	return newService(ctx, publisher, sd, sandbox.DefaultDeps()), nil
}

func newService(ctx context.Context, publisher shim.Publisher, sd shutdown.Service, deps sandbox.Deps) *service {
	s := &service{
		shutdown: sd,
		events:   newEventQueue(ctx, publisher),
		log:      slog.New(logrusHandler{entry: log.G(ctx)}),
		deps:     deps,
		started:  time.Now(),
		tasks:    map[string]*task{},
	}
	sd.RegisterCallback(func(context.Context) error {
		s.events.close()
		return nil
	})
	return s
}

// RegisterTTRPC makes the service a ttrpc plugin of the shim library.
func (s *service) RegisterTTRPC(server *ttrpc.Server) error {
	taskAPI.RegisterTaskService(server, s)
	return nil
}

func (s *service) getTask(id string) (*task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t, ok := s.tasks[id]
	if !ok {
		return nil, errdefs.ToGRPCf(errdefs.ErrNotFound, "task %s not found", id)
	}
	return t, nil
}

// getProcess finds a task and one of its processes ("" for the init).
func (s *service) getProcess(id, execID string) (*task, *sandbox.Process, error) {
	t, err := s.getTask(id)
	if err != nil {
		return nil, nil, err
	}
	p, err := t.process(execID)
	if err != nil {
		return nil, nil, err
	}
	return t, p, nil
}

func (s *service) Connect(ctx context.Context, r *taskAPI.ConnectRequest) (*taskAPI.ConnectResponse, error) {
	resp := &taskAPI.ConnectResponse{ShimPid: uint32(os.Getpid())}
	if t, err := s.getTask(r.ID); err == nil {
		resp.TaskPid = t.pid
	}
	return resp, nil
}

// Shutdown ends the shim once no task is left; containerd sends it after
// every Delete, and the pod's other tasks keep the shim alive.
func (s *service) Shutdown(ctx context.Context, r *taskAPI.ShutdownRequest) (*emptyResponse, error) {
	s.mu.Lock()
	n := len(s.tasks)
	sb := s.sb
	s.mu.Unlock()
	if n > 0 {
		return empty, nil
	}
	s.stopOperator()
	if sb != nil {
		if err := sb.Stop(ctx); err != nil {
			s.log.Warn("stop sandbox at shutdown", "err", err)
		}
	}
	s.shutdown.Shutdown()
	return empty, nil
}
