package shimv2

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	apitypes "github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/shutdown"
	"github.com/containerd/containerd/plugin"
	"github.com/containerd/containerd/runtime/v2/shim"
	"github.com/containerd/log"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/sandbox"
)

// RegisterPlugin registers the Task service with the shim library.
func RegisterPlugin() {
	plugin.Register(&plugin.Registration{
		Type:     plugin.TTRPCPlugin,
		ID:       "task",
		Requires: []plugin.Type{plugin.EventPlugin, plugin.InternalPlugin},
		InitFn: func(ic *plugin.InitContext) (interface{}, error) {
			pp, err := ic.GetByID(plugin.EventPlugin, "publisher")
			if err != nil {
				return nil, err
			}
			ss, err := ic.GetByID(plugin.InternalPlugin, "shutdown")
			if err != nil {
				return nil, err
			}
			return NewTaskService(ic.Context, pp.(shim.Publisher), ss.(shutdown.Service))
		},
	})
}

// Manager implements the shim binary's start and delete actions.
type Manager struct{ name string }

var _ shim.Manager = Manager{}

// NewManager returns the manager for runtime name.
func NewManager(name string) Manager { return Manager{name: name} }

func (m Manager) Name() string { return m.name }

// Start launches the pod's shim server, or returns the address of the one
// already serving the task's pod. It must not read stdin: containerd 2.3+
// writes bootstrap parameters there that the 1.7 library cannot parse.
func (m Manager) Start(ctx context.Context, id string, opts shim.StartOpts) (_ string, retErr error) {
	grouping := id
	if spec, err := readSpec("."); err == nil {
		if sid, joins := podOf(id, spec); joins {
			grouping = sid
		} else if sid := spec.Annotations[annSandboxID]; sid != "" {
			grouping = sid
		}
	}
	address, err := shim.SocketAddress(ctx, opts.Address, grouping)
	if err != nil {
		return "", err
	}
	socket, err := shim.NewSocket(address)
	if err != nil {
		if !shim.SocketEaddrinuse(err) {
			return "", fmt.Errorf("create shim socket: %w", err)
		}
		if shim.CanConnect(address) {
			// The pod's shim already runs: this task joins it.
			if err := shim.WriteAddress("address", address); err != nil {
				return "", fmt.Errorf("write shim address: %w", err)
			}
			return address, nil
		}
		if err := shim.RemoveSocket(address); err != nil {
			return "", fmt.Errorf("remove stale shim socket: %w", err)
		}
		if socket, err = shim.NewSocket(address); err != nil {
			return "", fmt.Errorf("create shim socket: %w", err)
		}
	}
	defer func() {
		if retErr != nil {
			socket.Close()
			_ = shim.RemoveSocket(address)
		}
	}()
	if err := shim.WriteAddress("address", address); err != nil {
		return "", err
	}
	f, err := socket.File()
	if err != nil {
		return "", err
	}
	defer f.Close()
	cmd, err := serverCommand(ctx, id, opts)
	if err != nil {
		return "", err
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, f)
	if err := cmd.Start(); err != nil {
		return "", err
	}
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
		}
	}()
	go func() { _ = cmd.Wait() }()
	if err := shim.AdjustOOMScore(cmd.Process.Pid); err != nil {
		log.G(ctx).WithError(err).Warn("adjust shim OOM score")
	}
	return address, nil
}

func serverCommand(ctx context.Context, id string, opts shim.StartOpts) (*exec.Cmd, error) {
	ns, err := namespaces.NamespaceRequired(ctx)
	if err != nil {
		return nil, err
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return nil, err
	}
	args := []string{"-namespace", ns, "-id", id, "-address", opts.Address}
	if opts.Debug {
		args = append(args, "-debug")
	}
	cmd := exec.Command(self, args...)
	cmd.Dir = cwd
	cmd.Env = append(os.Environ(), "GOMAXPROCS=2")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd, nil
}

// Stop is the delete action: containerd runs it in the task's bundle after
// the shim died (or a start failed). Everything is found from the bundle:
// the sandbox's state directory is derived from the sandbox bundle's path.
func (m Manager) Stop(ctx context.Context, id string) (shim.StopStatus, error) {
	bundle, err := os.Getwd()
	if err != nil {
		return shim.StopStatus{}, err
	}
	sandboxID := id
	if spec, err := readSpec(bundle); err == nil {
		if sid, joins := podOf(id, spec); joins {
			sandboxID = sid
		}
	}
	cfg, err := config.Load("")
	if err != nil {
		cfg = config.Default()
	}
	dir := sandbox.StateDir(cfg.Runtime.StateRoot, filepath.Join(filepath.Dir(bundle), sandboxID))
	if sandboxID == id {
		err = sandbox.Cleanup(dir)
	} else {
		err = sandbox.CleanupContainer(dir, id)
	}
	if err != nil {
		log.G(ctx).WithError(err).Warn("cleanup after shim")
	}
	return shim.StopStatus{ExitedAt: time.Now(), ExitStatus: 128 + int(syscall.SIGKILL)}, nil
}

// featuresTypeURL is how containerd names runtime-spec's features
// document inside an Any (core/runtime/typeurl.go registers it).
const featuresTypeURL = "types.containerd.io/opencontainers/runtime-spec/1/features/Features"

// mountOptions are the OCI mount options kata-go honours: the guest's
// libcontainer applies them, and shared volumes get "ro" and "rro" right
// on the host side too. containerd 2.x enables recursive read-only
// mounts for a runtime only when "rro" is listed.
var mountOptions = []string{
	"async", "atime", "bind", "defaults", "dev", "diratime", "exec", "noatime", "nodev", "nodiratime",
	"noexec", "norelatime", "nostrictatime", "nosuid", "private", "rbind", "relatime", "ro", "rprivate",
	"rro", "rshared", "rslave", "rw", "shared", "slave", "strictatime", "suid", "sync",
}

// RuntimeInfo answers containerd 2.x's `shim -info` (a types.RuntimeInfo
// protobuf on stdout); without it containerd logs an error at every create,
// and from its features containerd's CRI learns what the runtime supports.
func RuntimeInfo(name, version string) ([]byte, error) {
	f, err := json.Marshal(&features.Features{
		OCIVersionMin: "1.0.0", OCIVersionMax: specs.Version, MountOptions: mountOptions,
	})
	if err != nil {
		return nil, err
	}
	return proto.Marshal(&apitypes.RuntimeInfo{
		Name: name, Version: &apitypes.RuntimeVersion{Version: version},
		Features: &anypb.Any{TypeUrl: featuresTypeURL, Value: f},
	})
}
