package shimv2

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/sandbox/sandboxtest"
)

// Every pid containerd sees is the VMM's host pid: containerd and host
// tools act on a task pid as a host process, and a guest pid would name
// an unrelated one.
func TestTaskPidsAreTheVMMsHostPid(t *testing.T) {
	h := newHarness(t, runs)
	const want = sandboxtest.VMMPid
	if r := h.create("c", "sleep"); r.Pid != want {
		t.Fatalf("Create pid %d, want %d", r.Pid, want)
	}
	if ev := h.event(topicCreate).(*eventstypes.TaskCreate); ev.Pid != want {
		t.Fatalf("TaskCreate pid %d", ev.Pid)
	}
	r, err := h.s.Start(h.ctx, &taskAPI.StartRequest{ID: "c"})
	if err != nil || r.Pid != want {
		t.Fatalf("Start: %+v %v", r, err)
	}
	if ev := h.event(topicStart).(*eventstypes.TaskStart); ev.Pid != want {
		t.Fatalf("TaskStart pid %d", ev.Pid)
	}
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec("true")}); err != nil {
		t.Fatal(err)
	}
	if r, err := h.s.Start(h.ctx, &taskAPI.StartRequest{ID: "c", ExecID: "e"}); err != nil || r.Pid != want {
		t.Fatalf("Start exec: %+v %v", r, err)
	}
	h.wait("c", "e")
	for _, id := range []string{"", "e"} {
		st, err := h.s.State(h.ctx, &taskAPI.StateRequest{ID: "c", ExecID: id})
		if err != nil || st.Pid != want {
			t.Fatalf("State %q: %+v %v", id, st, err)
		}
	}
	if ev := h.event(topicExit).(*eventstypes.TaskExit); ev.Pid != want {
		t.Fatalf("TaskExit pid %d", ev.Pid)
	}
	if d, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "e"}); err != nil || d.Pid != want {
		t.Fatalf("Delete exec: %+v %v", d, err)
	}
	if _, err := h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: "c", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	h.wait("c", "")
	if d, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c"}); err != nil || d.Pid != want {
		t.Fatalf("Delete: %+v %v", d, err)
	}
	if ev := h.event(topicDelete).(*eventstypes.TaskDelete); ev.Pid != want {
		t.Fatalf("TaskDelete pid %d", ev.Pid)
	}
}

// containerd's CRI gives a pod's containers the sandbox task's namespaces
// as /proc/PID/ns/TYPE with the pid the shim reported (the VMM's); the
// guest must get the sandbox container's guest pid instead, and no other
// host pid may reach it.
func TestJoiningContainerGetsTheSandboxsGuestNamespaces(t *testing.T) {
	h := newHarness(t, runs)
	h.create("pod", "sleep")
	ann := map[string]string{annContainerType: "container", annSandboxID: "pod"}
	b := h.bundle("app", ann, "sleep")
	h.setNamespaces(b, []specs.LinuxNamespace{
		{Type: specs.NetworkNamespace, Path: "/proc/" + strconv.Itoa(sandboxtest.VMMPid) + "/ns/net"},
		{Type: specs.IPCNamespace, Path: "/proc/" + strconv.Itoa(sandboxtest.VMMPid) + "/ns/ipc"},
		{Type: specs.UTSNamespace, Path: "/proc/4321/ns/uts"},
	})
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "app", Bundle: b}); err != nil {
		t.Fatal(err)
	}
	pod, _ := h.s.getTask("pod")
	guest := strconv.Itoa(int(pod.c.Init().Pid()))
	got := map[specs.LinuxNamespaceType]string{}
	for _, n := range h.env.Agent.Spec("app").Linux.Namespaces {
		got[n.Type] = n.Path
	}
	if got[specs.IPCNamespace] != "/proc/"+guest+"/ns/ipc" || got[specs.UTSNamespace] != "" {
		t.Fatalf("guest namespaces %v; want ipc of guest pid %s and a new uts", got, guest)
	}
}

// setNamespaces replaces the linux.namespaces of a bundle's spec.
func (h *harness) setNamespaces(bundle string, ns []specs.LinuxNamespace) {
	h.t.Helper()
	p := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		h.t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		h.t.Fatal(err)
	}
	s.Linux.Namespaces = ns
	if b, err = json.Marshal(&s); err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		h.t.Fatal(err)
	}
}
