package sandbox

import (
	"encoding/json"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// guestSpec returns the spec the agent gets: the root and volumes point at
// the share, and nothing names a host resource the guest cannot have.
func guestSpec(s *specs.Spec, id string, mounts []specs.Mount) ([]byte, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	var g specs.Spec
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, err
	}
	if g.Root == nil {
		g.Root = &specs.Root{}
	}
	g.Root.Path = guestContainerShare(id) + "/rootfs"
	g.Mounts = mounts
	// Hooks are host binaries; they run on the host or not at all.
	g.Hooks = nil
	if g.Linux != nil {
		// Host paths mean nothing in the guest; /proc/PID/ns/* of a pod's
		// sandbox (the shim has rewritten PID from the VMM's host pid to
		// the sandbox container's guest pid) is kept for the agent to
		// check and join.
		for i, n := range g.Linux.Namespaces {
			if _, ok := agentapi.ProcNSPid(n.Path); !ok {
				g.Linux.Namespaces[i].Path = ""
			}
		}
	}
	return json.Marshal(&g)
}

// CheckSpec rejects specs the runtime cannot run, with the field named.
func CheckSpec(s *specs.Spec) error {
	if s == nil {
		return fmt.Errorf("OCI spec: missing")
	}
	if s.Process == nil || len(s.Process.Args) == 0 || s.Process.Args[0] == "" {
		return fmt.Errorf("OCI spec: process.args is empty")
	}
	if s.Process.Cwd == "" || s.Process.Cwd[0] != '/' {
		return fmt.Errorf("OCI spec: process.cwd %q is not an absolute path", s.Process.Cwd)
	}
	if s.Linux == nil {
		return fmt.Errorf("OCI spec: linux section missing")
	}
	if !hasNamespace(s, specs.NetworkNamespace) {
		return fmt.Errorf("OCI spec: linux.namespaces has no network namespace, which asks for host networking (hostNetwork, --net-host): a VM cannot share the host's network; run this pod with runc")
	}
	for _, m := range s.Mounts {
		if m.Destination == "" || m.Destination[0] != '/' {
			return fmt.Errorf("OCI spec: mount destination %q is not an absolute path", m.Destination)
		}
	}
	return nil
}

func hasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	for _, n := range s.Linux.Namespaces {
		if n.Type == t {
			return true
		}
	}
	return false
}
