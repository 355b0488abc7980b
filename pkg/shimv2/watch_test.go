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
