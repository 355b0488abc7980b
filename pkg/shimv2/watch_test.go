package shimv2

import (
	"testing"

	eventstypes "github.com/containerd/containerd/api/events"

	"github.com/kata-go/kata-go/pkg/sandbox"
	"github.com/kata-go/kata-go/pkg/sandbox/sandboxtest"
)

func TestVMDeathEndsEveryTask(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	h.env.VM.Kill()
	h.env.Agent.Die()
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
	h.env.Agent.OOM("c")
	if ev := h.event(topicOOM).(*eventstypes.TaskOOM); ev.ContainerID != "c" {
		t.Fatalf("TaskOOM %+v", ev)
	}
}

// An OOM kill reported with the exit reaches containerd before TaskExit,
// once, even when the agent's OOM long poll never delivers it.
func TestOOMBeforeExit(t *testing.T) {
	h := newHarness(t, func(args []string) sandboxtest.Behavior {
		return sandboxtest.Behavior{Exit: 137, OOM: true}
	})
	h.create("c", "hog")
	h.start("c", "")
	h.wait("c", "")
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
