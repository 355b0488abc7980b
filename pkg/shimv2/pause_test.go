package shimv2

import (
	"testing"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
)

func TestPauseResumeEvents(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	if _, err := h.s.Pause(h.ctx, &taskAPI.PauseRequest{ID: "c"}); err != nil || !h.env.Agent.Paused("c") {
		t.Fatalf("pause: %v (agent paused %v)", err, h.env.Agent.Paused("c"))
	}
	h.event(topicPaused)
	if _, err := h.s.Resume(h.ctx, &taskAPI.ResumeRequest{ID: "c"}); err != nil || h.env.Agent.Paused("c") {
		t.Fatalf("resume: %v", err)
	}
	h.event(topicResumed)
}
