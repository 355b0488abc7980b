package shimv2

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/sandbox"
)

// CRI annotations that place a container in a pod.
const (
	annContainerType = "io.kubernetes.cri.container-type"
	annSandboxID     = "io.kubernetes.cri.sandbox-id"
)

func (s *service) Create(ctx context.Context, r *taskAPI.CreateTaskRequest) (_ *taskAPI.CreateTaskResponse, retErr error) {
	if r.Checkpoint != "" {
		return nil, errdefs.ToGRPCf(errdefs.ErrNotImplemented, "restore from checkpoint is not supported by kata-go")
	}
	spec, err := readSpec(r.Bundle)
	if err != nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrInvalidArgument, "%v", err)
	}
	if err := sandbox.CheckSpec(spec); err != nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrInvalidArgument, "%v", err)
	}
	cfgPath, err := configPath(r.Options)
	if err != nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrInvalidArgument, "%v", err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrInvalidArgument, "%v", err)
	}
	sandboxID, joins := podOf(r.ID, spec)

	s.mu.Lock()
	if _, ok := s.tasks[r.ID]; ok {
		s.mu.Unlock()
		return nil, errdefs.ToGRPCf(errdefs.ErrAlreadyExists, "task %s already exists", r.ID)
	}
	sb := s.sb
	if joins && (sb == nil || s.sandboxID != sandboxID) {
		s.mu.Unlock()
		return nil, errdefs.ToGRPCf(errdefs.ErrFailedPrecondition, "container %s: its pod sandbox %s is not running in this shim", r.ID, sandboxID)
	}
	if !joins && sb != nil {
		s.mu.Unlock()
		return nil, errdefs.ToGRPCf(errdefs.ErrFailedPrecondition, "task %s: this shim already runs sandbox %s", r.ID, s.sandboxID)
	}
	s.mu.Unlock()

	owner := false
	if sb == nil {
		sb, err = sandbox.Start(ctx, sandbox.Options{
			ID: sandboxID, StateDir: sandbox.StateDir(cfg.Runtime.StateRoot, r.Bundle),
			Config: cfg, Spec: spec, Logger: s.log, Deps: s.deps,
		})
		if err != nil {
			return nil, errdefs.ToGRPCf(errdefs.ErrFailedPrecondition, "%v", err)
		}
		owner = true
		defer func() {
			if retErr != nil {
				_ = sb.Stop(context.Background())
			}
		}()
	}
	io := sandbox.IO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	var mounts []mount.Mount
	for _, m := range r.Rootfs {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Options: m.Options})
	}
	c, err := sb.CreateContainer(ctx, sandbox.ContainerOptions{ID: r.ID, Bundle: r.Bundle, Rootfs: mounts, Spec: spec, IO: io})
	if err != nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrFailedPrecondition, "%v", err)
	}
	t := newTask(r.ID, r.Bundle, owner, c, io)
	t.created = time.Now()
	s.mu.Lock()
	s.tasks[r.ID] = t
	if owner {
		s.sb, s.sandboxID = sb, sandboxID
		go s.watchSandbox(sb)
		go s.forwardOOM(sb)
	}
	s.mu.Unlock()
	s.events.publish(topicCreate, &eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs,
		IO:  &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid: c.Init().Pid(),
	})
	return &taskAPI.CreateTaskResponse{Pid: c.Init().Pid()}, nil
}

func readSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read OCI spec: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("OCI spec %s/config.json: %w", bundle, err)
	}
	return &s, nil
}

// podOf says which sandbox a task belongs to and whether it joins one that
// already runs (a CRI "container") rather than starting its own.
func podOf(id string, s *specs.Spec) (sandboxID string, joins bool) {
	if s.Annotations[annContainerType] == "container" && s.Annotations[annSandboxID] != "" {
		return s.Annotations[annSandboxID], true
	}
	return id, false
}
