package shimv2

import (
	"strings"
	"testing"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
)

func TestCreateStartExitInOrder(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c1", "fail")
	h.start("c1", "")
	if got := h.wait("c1", ""); got != 3 {
		t.Fatalf("exit status %d, want 3", got)
	}
	exit := h.event(topicExit).(*eventstypes.TaskExit)
	if exit.ExitStatus != 3 || exit.ContainerID != "c1" || exit.ID != "c1" {
		t.Fatalf("TaskExit %+v", exit)
	}
	want := []string{topicCreate, topicStart, topicExit}
	if got := h.pub.topics(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("events %v, want %v", got, want)
	}
}

func TestCreateRejectsBadSpec(t *testing.T) {
	h := newHarness(t, runs)
	_, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "bad", Bundle: h.bundle("bad", nil)})
	if !errdefs.IsInvalidArgument(errdefs.FromGRPC(err)) || !strings.Contains(err.Error(), "process.args") {
		t.Fatalf("create with no args: %v", err)
	}
	if h.env.VM != nil {
		t.Fatal("a VM was created for an invalid spec")
	}
}

func TestCreateReportsMissingExecutable(t *testing.T) {
	h := newHarness(t, runs)
	_, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "m", Bundle: h.bundle("m", nil, "/missing")})
	if err == nil || !strings.Contains(err.Error(), "/missing") {
		t.Fatalf("create of a missing binary: %v", err)
	}
	if !h.env.VM.Stopped() {
		t.Fatal("the VM started for a failed create was not stopped")
	}
}

func TestCreateJoinNeedsItsPod(t *testing.T) {
	h := newHarness(t, runs)
	ann := map[string]string{annContainerType: "container", annSandboxID: "pod"}
	_, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "app", Bundle: h.bundle("app", ann, "true")})
	if !errdefs.IsFailedPrecondition(errdefs.FromGRPC(err)) {
		t.Fatalf("joining a missing pod: %v", err)
	}
}

func TestCreatePodContainersShareOneVM(t *testing.T) {
	h := newHarness(t, runs)
	h.create("pod", "sleep")
	vm := h.env.VM
	ann := map[string]string{annContainerType: "container", annSandboxID: "pod"}
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "app", Bundle: h.bundle("app", ann, "sleep")}); err != nil {
		t.Fatal(err)
	}
	if h.env.VM != vm {
		t.Fatal("the pod's second container got a second VM")
	}
	if _, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "other", Bundle: h.bundle("other", nil, "sleep")}); !errdefs.IsFailedPrecondition(errdefs.FromGRPC(err)) {
		t.Fatalf("a second sandbox in one shim: %v", err)
	}
}

func TestCreateNamesBadConfigKey(t *testing.T) {
	h := newHarness(t, runs)
	t.Setenv("KATA_GO_CONFIG", h.bundle("cfg", nil, "x")+"/config.json") // JSON is not TOML
	_, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: "c", Bundle: h.bundle("c", nil, "true")})
	if err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Fatalf("bad config: %v", err)
	}
}
