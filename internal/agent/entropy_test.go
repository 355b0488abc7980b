package agent

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

// recorder is the test service's entropy edge: the host's tests must never
// feed the kernel pool (as root the real edge would succeed on the host).
func recorder(t *testing.T, s *service) *hostEntropy {
	t.Helper()
	e, ok := s.entropy.(*hostEntropy)
	if !ok {
		t.Fatalf("the test service's entropy edge is %T, not the recorder", s.entropy)
	}
	return e
}

func recorded(e *hostEntropy) [][]byte {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([][]byte(nil), e.seeds...)
}

func seedOf(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// A seed too short to carry 256 bits, or longer than the agent takes, is
// refused before it reaches the pool; the refusal names the bounds.
func TestReseedRandomRefusesBadSizes(t *testing.T) {
	s := newTestService(t)
	e := recorder(t, s)
	for _, n := range []int{0, 1, minSeed - 1, maxSeed + 1, 1 << 20} {
		var seed []byte
		if n > 0 {
			seed = seedOf(n, 0xa5)
		}
		_, err := s.ReseedRandom(context.Background(), &agentapi.ReseedRandomRequest{Seed: seed})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("seed of %d bytes: %v, want InvalidArgument", n, err)
		}
		if msg := status.Convert(err).Message(); !strings.Contains(msg, "512") || !strings.Contains(msg, "32") {
			t.Fatalf("seed of %d bytes: refusal %q does not name the limits", n, msg)
		}
	}
	if got := recorded(e); len(got) != 0 {
		t.Fatalf("refused seeds reached the pool: %d of them", len(got))
	}
}

// Seeds within the bounds reach the pool whole, in order.
func TestReseedRandomHandsTheSeedToThePool(t *testing.T) {
	s := newTestService(t)
	e := recorder(t, s)
	want := [][]byte{seedOf(minSeed, 1), seedOf(64, 2), seedOf(maxSeed, 3)}
	for _, seed := range want {
		if _, err := s.ReseedRandom(context.Background(), &agentapi.ReseedRandomRequest{Seed: seed}); err != nil {
			t.Fatalf("seed of %d bytes: %v", len(seed), err)
		}
	}
	got := recorded(e)
	if len(got) != len(want) {
		t.Fatalf("%d seeds reached the pool, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("seed %d reached the pool as %d bytes %x..., want %d bytes %x...", i, len(got[i]), got[i][:1], len(want[i]), want[i][:1])
		}
	}
}

type failingPool struct{}

func (failingPool) reseed([]byte) error { return errors.New("RNDADDENTROPY: operation not permitted") }

// A pool that cannot be reseeded is the host's to hear about: the clone
// would keep its siblings' randomness.
func TestReseedRandomReportsAPoolFailure(t *testing.T) {
	s := newTestService(t)
	s.entropy = failingPool{}
	_, err := s.ReseedRandom(context.Background(), &agentapi.ReseedRandomRequest{Seed: seedOf(64, 7)})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "RNDADDENTROPY") {
		t.Fatalf("reseed with a failing pool: %v", err)
	}
}

// PrepareTemplate on a service with no channel to spare (the host-side
// service in tests) is a no-op, not a crash.
func TestPrepareTemplateWithoutAChannel(t *testing.T) {
	s := newTestService(t)
	s.forTemplate = nil
	if _, err := s.PrepareTemplate(context.Background(), &agentapi.Empty{}); err != nil {
		t.Fatal(err)
	}
}

// connectHost proves a new host connection through the guard and returns
// a ttrpc client over it.
func connectHost(t *testing.T, l *pipeListener) (agentapi.AgentService, *ttrpc.Client) {
	t.Helper()
	c := l.dial(t, host())
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if err := channel.Connect(c, secret); err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Time{})
	tc := ttrpc.NewClient(c)
	return agentapi.NewAgentClient(tc), tc
}

// hostGone waits until the guard no longer counts a host connection open.
func hostGone(t *testing.T, g *guardedListener) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.mu.Lock()
		active := g.active
		g.mu.Unlock()
		if !active {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the host's hang-up was never noticed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// The template maker hangs up after PrepareTemplate: that hang-up must not
// power the VM off (it is about to be saved), but the next host's - a
// clone's shim - must, as always.
func TestPrepareTemplateSparesOnlyTheNextHangup(t *testing.T) {
	l, g := setup(t)
	svc := newTestService(t)
	svc.forTemplate = g.holdForTemplate
	hangups := make(chan struct{}, 8)
	g.whenHostHangsUp(func() { hangups <- struct{}{} })
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentapi.RegisterAgentService(srv, svc)
	served := make(chan struct{})
	go func() { defer close(served); _ = srv.Serve(context.Background(), g) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// The template maker.
	maker, tc := connectHost(t, l)
	if _, err := maker.PrepareTemplate(ctx, &agentapi.Empty{}); err != nil {
		t.Fatal(err)
	}
	tc.Close()
	hostGone(t, g)
	select {
	case <-hangups:
		t.Fatal("the template maker's hang-up powered the VM off")
	case <-time.After(200 * time.Millisecond):
	}

	// A clone's shim: its hang-up is the pod's end.
	for i, what := range []string{"the first clone host's", "a later host's"} {
		clone, tc := connectHost(t, l)
		if _, err := clone.Check(ctx, &agentapi.CheckRequest{}); err != nil {
			t.Fatalf("host %d: %v", i, err)
		}
		tc.Close()
		select {
		case <-hangups:
		case <-time.After(2 * time.Second):
			t.Fatalf("%s hang-up did not power the VM off", what)
		}
		hostGone(t, g)
	}
}
