package sandbox

import (
	"encoding/json"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// FuzzGuestSpec drives the host's side of the guest spec: CheckSpec, then
// guestSpec on what it accepted. Whatever the client's spec says, the
// guest gets its root in the container's share, no hooks, and no namespace
// path but a pod sandbox's /proc/PID/ns (internal/agent's FuzzGuestSpec
// drives the guest's side).
func FuzzGuestSpec(f *testing.F) {
	f.Add("c1", []byte(`{"process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"network","path":"/var/run/netns/x"},{"type":"ipc","path":"/proc/42/ns/ipc"}]},"hooks":{"prestart":[{"path":"/host/bin"}]}}`))
	f.Add("x", []byte(`{"process":{"args":["a"],"cwd":"rel"},"linux":{}}`))
	f.Add("y", []byte(`{"process":{"args":["a"],"cwd":"/"},"linux":{"namespaces":[{"type":"network"}]},"mounts":[{"destination":"/data","type":"tmpfs"}]}`))
	f.Fuzz(func(t *testing.T, id string, raw []byte) {
		var s specs.Spec
		if !agentapi.ValidID(id) || json.Unmarshal(raw, &s) != nil || CheckSpec(&s) != nil {
			return
		}
		if !strings.HasPrefix(s.Process.Cwd, "/") {
			t.Fatalf("accepted relative cwd %q", s.Process.Cwd)
		}
		for _, m := range s.Mounts {
			if !strings.HasPrefix(m.Destination, "/") {
				t.Fatalf("accepted relative mount destination %q", m.Destination)
			}
		}
		out, err := guestSpec(&s, id, nil)
		if err != nil {
			return
		}
		var g specs.Spec
		if err := json.Unmarshal(out, &g); err != nil {
			t.Fatalf("guestSpec wrote what it cannot read back: %v", err)
		}
		if g.Root == nil || g.Root.Path != guestContainerShare(id)+"/rootfs" {
			t.Fatalf("guest root %+v, want the container's share", g.Root)
		}
		if g.Hooks != nil || len(g.Mounts) != 0 {
			t.Fatalf("host hooks or unshared mounts reach the guest: %+v %+v", g.Hooks, g.Mounts)
		}
		for _, n := range g.Linux.Namespaces {
			if _, ok := agentapi.ProcNSPid(n.Path); n.Path != "" && !ok {
				t.Fatalf("host namespace path %q reaches the guest", n.Path)
			}
		}
	})
}
