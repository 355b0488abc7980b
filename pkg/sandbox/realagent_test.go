package sandbox_test

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/internal/agent"
	"github.com/kata-go/kata-go/pkg/sandbox"
	"github.com/kata-go/kata-go/pkg/sandbox/sandboxtest"
)

// The real agent's refusals reach the sandbox's callers with their class:
// errdefs tests see through the sandbox's %w context.
func TestAgentRefusalsKeepTheirClass(t *testing.T) {
	deps, _ := sandboxtest.Deps(t, agent.Options{})
	sb, _, err := start(t, spec("sleep", "100"), deps)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	c, err := sb.CreateContainer(ctx, sandbox.ContainerOptions{ID: "c1", Bundle: t.TempDir(), Spec: spec("sleep", "100")})
	if err != nil {
		t.Fatal(err)
	}
	// An exec before the container started: the agent refuses it.
	p, err := c.AddExec(ctx, "early", &specs.Process{Args: []string{"true"}, Cwd: "/"}, sandbox.IO{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartExec(ctx, p); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("exec before start: %v, want FailedPrecondition", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// A second start never reaches the agent: the host's state machine
	// refuses it as runc's shim does (procstate_test.go checks its class).
	if err := c.Start(ctx); err == nil {
		t.Fatal("second start accepted")
	}
	// The init ends: an exec into the stopped container is refused.
	if err := c.Init().Signal(ctx, 9, false); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Init().Exited():
	case <-time.After(10 * time.Second):
		t.Fatal("init did not exit after SIGKILL")
	}
	// An exec into the stopped container never reaches the agent either.
	if _, err := c.AddExec(ctx, "late", &specs.Process{Args: []string{"true"}, Cwd: "/"}, sandbox.IO{}); err == nil {
		t.Fatal("exec into a stopped container accepted")
	}
	// A container the guest forgot answers NotFound from the agent; that
	// class reaching callers through %w is agenterr_test.go's. (Asked here
	// it raced the host's own view: the guest reports the forgotten init's
	// exit, and the state machine then refuses first.)
}

// The guest's clock is set at start and kept by SyncClock.
func TestGuestClockFollowsTheHost(t *testing.T) {
	deps, env := sandboxtest.Deps(t, agent.Options{ClockOffset: -1500 * time.Millisecond})
	sb, _, err := start(t, spec("true"), deps)
	if err != nil {
		t.Fatal(err)
	}
	// In process the round trip is well under a millisecond: the guest
	// ends within the no-step tolerance (1 ms) plus half of it.
	if off := env.Agent.Guest.ClockOffset(); off > 5*time.Millisecond || off < -5*time.Millisecond {
		t.Fatalf("guest clock %s off the host's after start", off)
	}
	env.Agent.Guest.SetClockOffset(3 * time.Second) // e.g. a VM resumed after a pause
	cs, err := sb.SyncClock(context.Background())
	if err != nil || !cs.Stepped {
		t.Fatalf("sync: %+v %v", cs, err)
	}
	if off := env.Agent.Guest.ClockOffset(); off > 5*time.Millisecond || off < -5*time.Millisecond {
		t.Fatalf("guest clock %s off the host's after SyncClock (measured %+v)", off, cs)
	}
}
