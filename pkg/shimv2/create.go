package shimv2

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/agentapi"
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
	ro, err := parseOptions(r.Options)
	if err != nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrInvalidArgument, "%v", err)
	}
	if err := ro.placeShim(); err != nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrFailedPrecondition, "%v", err)
	}
	cfg, err := config.Load(ro.ConfigPath)
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
			Config: cfg, Spec: spec, Logger: s.log, Deps: s.deps, ShimPlaced: ro.ShimCgroup != "",
		})
		if err != nil {
			return nil, classed(fmt.Errorf("start sandbox %s: %w", sandboxID, err), errdefs.ErrFailedPrecondition)
		}
		owner = true
		defer func() {
			if retErr != nil {
				_ = sb.Stop(context.Background())
			}
		}()
	}
	pid, err := vmmPid(sb)
	if err != nil {
		return nil, errdefs.ToGRPCf(errdefs.ErrFailedPrecondition, "task %s: %v", r.ID, err)
	}
	if joins {
		s.podNamespaces(spec, pid)
	}
	io := sandbox.IO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal}
	var mounts []mount.Mount
	for _, m := range r.Rootfs {
		mounts = append(mounts, mount.Mount{Type: m.Type, Source: m.Source, Options: m.Options})
	}
	if err := sb.CheckFits(r.ID, spec); err != nil {
		return nil, errToGRPC(err)
	}
	c, err := sb.CreateContainer(ctx, sandbox.ContainerOptions{ID: r.ID, Bundle: r.Bundle, Rootfs: mounts, Spec: spec, IO: io})
	if err != nil {
		return nil, errToGRPC(err)
	}
	t := newTask(r.ID, r.Bundle, owner, c, io, pid)
	t.created = time.Now()
	s.mu.Lock()
	s.tasks[r.ID] = t
	if owner {
		s.sb, s.sandboxID = sb, sandboxID
		go s.watchSandbox(sb)
		go s.forwardOOM(sb)
	}
	s.mu.Unlock()
	if owner {
		s.startOperator(ctx, sb, spec)
	}
	s.events.publish(topicCreate, &eventstypes.TaskCreate{
		ContainerID: r.ID, Bundle: r.Bundle, Rootfs: r.Rootfs,
		IO:  &eventstypes.TaskIO{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, Terminal: r.Terminal},
		Pid: pid,
	})
	return &taskAPI.CreateTaskResponse{Pid: pid}, nil
}

// vmmPid is the host pid every task of sb reports: its VMM's.
func vmmPid(sb *sandbox.Sandbox) (uint32, error) {
	pids := sb.VMPids()
	if len(pids) == 0 || pids[0] <= 0 || pids[0] > math.MaxInt32 {
		return 0, fmt.Errorf("the VM has no host process to report as the task's pid (%v)", pids)
	}
	return uint32(pids[0]), nil
}

// podNamespaces points a joining container's namespace paths at the pod's
// sandbox container in the guest. containerd's CRI names the pod's
// namespaces /proc/PID/ns/TYPE with the pid this shim reported for the
// sandbox task, which is the VMM's host pid; the guest knows that
// container by its guest pid. Any other /proc/PID/ns path names a host
// process and would mean an unrelated process in the guest: it is dropped,
// so the container gets a namespace of its own.
func (s *service) podNamespaces(spec *specs.Spec, vmm uint32) {
	if spec.Linux == nil {
		return
	}
	s.mu.Lock()
	var guest uint32
	if t, ok := s.tasks[s.sandboxID]; ok {
		guest = t.c.Init().Pid()
	}
	s.mu.Unlock()
	for i, n := range spec.Linux.Namespaces {
		pid, ok := agentapi.ProcNSPid(n.Path)
		if !ok {
			continue
		}
		if uint32(pid) == vmm && guest != 0 {
			spec.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/%s", guest, filepath.Base(n.Path))
		} else {
			spec.Linux.Namespaces[i].Path = ""
		}
	}
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
