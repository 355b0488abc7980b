package shimv2

import (
	"testing"

	eventstypes "github.com/containerd/containerd/api/events"

	"github.com/kata-go/kata-go/pkg/sandbox"
)

func TestVMDeathEndsEveryTask(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	h.env.VM.Kill() // the agent connection drops with it
	if got := h.wait("c", ""); got != sandbox.VMDiedStatus {
		t.Fatalf("status %d after VM death, want %d", got, sandbox.VMDiedStatus)
	}
	if ev := h.event(topicExit).(*eventstypes.TaskExit); ev.ExitStatus != sandbox.VMDiedStatus {
		t.Fatalf("TaskExit %+v", ev)
	}
}

func TestOOMIsPublished(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	if !h.env.Agent.OOMKill("c") {
		t.Fatal("no container c in the guest")
	}
	if ev := h.event(topicOOM).(*eventstypes.TaskOOM); ev.ContainerID != "c" {
		t.Fatalf("TaskOOM %+v", ev)
	}
}

// An OOM kill reported with the exit reaches containerd before TaskExit,
// once, even when the agent's OOM long poll never delivers it.
func TestOOMBeforeExit(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	if !h.env.Agent.OOMKill("c") {
		t.Fatal("no container c in the guest")
	}
	if got := h.wait("c", ""); got != 137 {
		t.Fatalf("status %d after an OOM kill, want 137", got)
	}
	h.event(topicExit)
	var order []string
	for _, tp := range h.pub.topics() {
		if tp == topicOOM || tp == topicExit {
			order = append(order, tp)
		}
	}
	if len(order) != 2 || order[0] != topicOOM {
		t.Fatalf("events %v, want one TaskOOM then TaskExit", order)
	}
}
