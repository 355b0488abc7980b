package shimv2

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/namespaces"
	"github.com/containerd/containerd/pkg/shutdown"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"go.uber.org/goleak"

	"github.com/kata-go/kata-go/internal/agent"
	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hypervisor"
	"github.com/kata-go/kata-go/pkg/sandbox"
	"github.com/kata-go/kata-go/pkg/sandbox/sandboxtest"
)

func TestMain(m *testing.M) {
	logrus.SetLevel(logrus.WarnLevel)
	goleak.VerifyTestMain(m)
}

// recorder records events in order.
type recorder struct {
	mu     sync.Mutex
	events []published
	closed bool
}

type published struct {
	topic string
	ev    events.Event
}

func (p *recorder) Publish(_ context.Context, topic string, ev events.Event) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, published{topic, ev})
	return nil
}

func (p *recorder) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	return nil
}

func (p *recorder) topics() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		out = append(out, e.topic)
	}
	return out
}

// harness is a service over fakes, with a private config and state root.
type harness struct {
	t      *testing.T
	ctx    context.Context
	s      *service
	pub    *recorder
	env    *sandboxtest.Env
	sd     shutdown.Service
	cancel context.CancelFunc
	dir    string
}

// harnessOption changes what a harness is built from.
type harnessOption func(*harnessSetup)

type harnessSetup struct {
	config string                                 // TOML appended to the config file
	agent  func(*sandboxtest.Agent) sandbox.Agent // wraps the fake agent
}

// withConfig appends TOML (whole tables) to the harness's config file.
func withConfig(toml string) harnessOption {
	return func(s *harnessSetup) { s.config += toml }
}

// withAgent puts wrap(fake) between the sandbox and the hand-written
// agent, as a lying agent does; env.Fake stays the fake inside.
func withAgent(wrap func(*sandboxtest.Agent) sandbox.Agent) harnessOption {
	return func(s *harnessSetup) { s.agent = wrap }
}

func newHarness(t *testing.T, script func([]string) sandboxtest.Behavior, opts ...harnessOption) *harness {
	t.Helper()
	var setup harnessSetup
	for _, o := range opts {
		o(&setup)
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "kata.toml")
	cfg := fmt.Sprintf("[runtime]\nstate_root = %q\n", filepath.Join(dir, "state")) + setup.config
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv(config.EnvPath, cfgPath)
	ctx, cancel := context.WithCancel(namespaces.WithNamespace(context.Background(), "test"))
	ctx, sd := shutdown.WithShutdown(ctx)
	// The real agent serves every test but the hostile ones, whose liars
	// bend the hand-written agent's answers in process.
	var (
		deps sandbox.Deps
		env  *sandboxtest.Env
	)
	if setup.agent != nil {
		deps, env = sandboxtest.FakeDeps(script)
		a := setup.agent(env.Fake)
		deps.DialAgent = func(context.Context, hypervisor.AgentAddress) (sandbox.Agent, error) { return a, nil }
	} else {
		deps, env = sandboxtest.Deps(t, agent.Options{Command: hostCommand})
	}
	pub := &recorder{}
	h := &harness{t: t, ctx: ctx, s: newService(ctx, pub, sd, deps), pub: pub, env: env, sd: sd, cancel: cancel, dir: dir}
	t.Cleanup(h.close)
	return h
}

// close deletes what a test left and stops the shim's goroutines.
func (h *harness) close() {
	h.s.mu.Lock()
	ids := make([]string, 0, len(h.s.tasks))
	for id := range h.s.tasks {
		ids = append(ids, id)
	}
	h.s.mu.Unlock()
	for _, id := range ids {
		_, _ = h.s.Kill(h.ctx, &taskAPI.KillRequest{ID: id, Signal: 9})
		if t, err := h.s.getTask(id); err == nil {
			select {
			case <-t.c.Init().Exited():
			case <-time.After(5 * time.Second):
			}
		}
		_, _ = h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: id})
	}
	_, _ = h.s.Shutdown(h.ctx, &taskAPI.ShutdownRequest{})
	<-h.sd.Done()
	h.cancel()
}

// bundle writes a bundle whose spec runs args.
func (h *harness) bundle(id string, ann map[string]string, args ...string) string {
	h.t.Helper()
	b := filepath.Join(h.dir, "bundles", id)
	if err := os.MkdirAll(filepath.Join(b, "rootfs"), 0o755); err != nil {
		h.t.Fatal(err)
	}
	s := specs.Spec{
		Version:     specs.Version,
		Process:     &specs.Process{Args: args, Cwd: "/", Env: []string{"PATH=/bin"}},
		Root:        &specs.Root{Path: "rootfs"},
		Hostname:    id,
		Annotations: ann,
		Linux:       &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}},
	}
	data, err := json.Marshal(&s)
	if err != nil {
		h.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b, "config.json"), data, 0o644); err != nil {
		h.t.Fatal(err)
	}
	return b
}

func (h *harness) create(id string, args ...string) *taskAPI.CreateTaskResponse {
	h.t.Helper()
	r, err := h.s.Create(h.ctx, &taskAPI.CreateTaskRequest{ID: id, Bundle: h.bundle(id, nil, args...)})
	if err != nil {
		h.t.Fatalf("create %s: %v", id, err)
	}
	return r
}

func (h *harness) start(id, exec string) {
	h.t.Helper()
	if _, err := h.s.Start(h.ctx, &taskAPI.StartRequest{ID: id, ExecID: exec}); err != nil {
		h.t.Fatalf("start %s/%s: %v", id, exec, err)
	}
}

func (h *harness) wait(id, exec string) uint32 {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	r, err := h.s.Wait(ctx, &taskAPI.WaitRequest{ID: id, ExecID: exec})
	if err != nil {
		h.t.Fatalf("wait %s/%s: %v", id, exec, err)
	}
	return r.ExitStatus
}

// event waits for the n-th event of topic.
func (h *harness) event(topic string) events.Event {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h.pub.mu.Lock()
		for _, e := range h.pub.events {
			if e.topic == topic {
				h.pub.mu.Unlock()
				return e.ev
			}
		}
		h.pub.mu.Unlock()
		time.Sleep(2 * time.Millisecond)
	}
	h.t.Fatalf("no %s event; got %v", topic, h.pub.topics())
	return nil
}

// hostCommand gives the real agent's host processes what runs says:
// "sleep" runs until signalled, "fail" prints to both streams and exits 3,
// "record FILE" copies stdin to FILE and then creates FILE.eof, anything
// else prints hello; an absolute path runs as itself.
func hostCommand(args []string) []string {
	if strings.HasPrefix(args[0], "/") {
		return args // a path runs as itself (a missing one fails the create)
	}
	switch args[0] {
	case "sleep":
		return []string{"sleep", "1000"}
	case "fail":
		return []string{"sh", "-c", "echo out; echo err >&2; exit 3"}
	case "record":
		return []string{"sh", "-c", `cat > "$1"; touch "$1.eof"; sleep 1000`, "record", args[1]}
	}
	return []string{"echo", "hello"}
}

// runs is the hand-written agent's script for the hostile tests: args[0]
// "sleep" runs until signalled, "fail" exits 3 after printing, anything
// else exits 0.
func runs(args []string) sandboxtest.Behavior {
	switch args[0] {
	case "sleep":
		return sandboxtest.Behavior{UntilSignal: true}
	case "fail":
		return sandboxtest.Behavior{Stdout: "out\n", Stderr: "err\n", Exit: 3}
	}
	return sandboxtest.Behavior{Stdout: "hello\n"}
}
