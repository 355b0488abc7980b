package agent

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// cgroupParent is where every container's cgroup lives in the guest. The
// host's cgroupsPath (often a systemd slice of the host) means nothing here.
const cgroupParent = "/kata-go"

func checkID(kind, id string) error {
	if !agentapi.ValidID(id) {
		return fmt.Errorf("invalid %s id %q: want 1-128 of [A-Za-z0-9_.+-], not starting with a symbol", kind, id)
	}
	return nil
}

// guestSpec decodes the OCI spec the host sent and adapts it to the guest:
// things that name host resources (hooks, devices, labels, namespace paths,
// the cgroup path) are dropped or replaced, and the network namespace is
// removed because the VM itself is the pod's network sandbox.
//
// A namespace path of the form /proc/PID/ns/TYPE is kept when joinable says
// PID is the init of a container in this guest: that is how the containers
// of a pod (CRI) share the sandbox container's IPC and UTS namespaces, the
// PID being the guest pid the runtime reported for the sandbox.
func guestSpec(id string, raw []byte, joinable func(pid int) bool) (*specs.Spec, error) {
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("decode OCI spec: %w", err)
	}
	if s.Root == nil || s.Root.Path == "" {
		return nil, fmt.Errorf("OCI spec: root.path is required")
	}
	if !filepath.IsAbs(s.Root.Path) {
		return nil, fmt.Errorf("OCI spec: root.path %q must be an absolute guest path", s.Root.Path)
	}
	if err := checkProcess(s.Process); err != nil {
		return nil, fmt.Errorf("OCI spec: %w", err)
	}
	if s.Linux == nil {
		return nil, fmt.Errorf("OCI spec: linux section is required")
	}
	s.Hooks = nil
	s.Linux.Devices = nil
	s.Linux.MountLabel = ""
	s.Process.SelinuxLabel = ""
	s.Process.ApparmorProfile = ""
	s.Linux.CgroupsPath = cgroupParent + "/" + id
	if s.Linux.Resources != nil {
		// Device rules name host devices; the guest allows the OCI defaults.
		s.Linux.Resources.Devices = nil
		// cgroup v2 in the guest has no swappiness knob.
		if s.Linux.Resources.Memory != nil {
			s.Linux.Resources.Memory.Swappiness = nil
		}
		s.Linux.Resources.BlockIO = nil
		s.Linux.Resources.HugepageLimits = nil
		s.Linux.Resources.Network = nil
		s.Linux.Resources.Rdma = nil
	}
	ns := s.Linux.Namespaces[:0]
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace {
			continue
		}
		if pid, ok := agentapi.ProcNSPid(n.Path); !ok || joinable == nil || !joinable(pid) {
			n.Path = ""
		}
		ns = append(ns, n)
	}
	s.Linux.Namespaces = ns
	return &s, nil
}

// podSysctls takes the net.* sysctls out of the spec: with no network
// namespace of its own a container shares the guest's, which is the pod's,
// so they are set on the guest (libcontainer refuses them otherwise).
func podSysctls(s *specs.Spec) map[string]string {
	out := map[string]string{}
	for k, v := range s.Linux.Sysctl {
		if strings.HasPrefix(k, "net.") {
			out[k] = v
			delete(s.Linux.Sysctl, k)
		}
	}
	return out
}

var sysctlKey = regexp.MustCompile(`^[a-z0-9_]+(\.[a-zA-Z0-9_\-]+)+$`)

// sysctlPath maps a sysctl name to its /proc/sys file, refusing anything
// that could step outside it.
func sysctlPath(key string) (string, error) {
	if !sysctlKey.MatchString(key) || strings.Contains(key, "..") {
		return "", fmt.Errorf("invalid sysctl name %q", key)
	}
	return "/proc/sys/" + strings.ReplaceAll(key, ".", "/"), nil
}

func checkProcess(p *specs.Process) error {
	if p == nil {
		return fmt.Errorf("process is required")
	}
	if len(p.Args) == 0 || p.Args[0] == "" {
		return fmt.Errorf("process.args must name an executable")
	}
	if p.Cwd == "" || !filepath.IsAbs(p.Cwd) {
		return fmt.Errorf("process.cwd %q must be an absolute path", p.Cwd)
	}
	if p.ConsoleSize != nil && (p.ConsoleSize.Height > 10000 || p.ConsoleSize.Width > 10000) {
		return fmt.Errorf("process.consoleSize %dx%d is out of range", p.ConsoleSize.Width, p.ConsoleSize.Height)
	}
	return nil
}

// execProcess decodes and checks the OCI process of an exec.
func execProcess(raw []byte) (*specs.Process, error) {
	var p specs.Process
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("decode OCI process: %w", err)
	}
	if err := checkProcess(&p); err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	p.SelinuxLabel = ""
	p.ApparmorProfile = ""
	return &p, nil
}
