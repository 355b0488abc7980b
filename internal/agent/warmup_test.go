package agent

import (
	"context"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// warmService is a test service whose warm-up root is a temp dir and
// whose processes run as command says; it records what ran and whether
// the root was cleaned up and the next hang-up spared.
type warmService struct {
	*service
	// mu guards ran, cleaned and spared.
	mu      sync.Mutex
	ran     [][]string
	cleaned bool
	spared  bool
}

func newWarmService(t *testing.T, command string) *warmService {
	t.Helper()
	w := &warmService{}
	w.service = NewService(Options{Dir: t.TempDir(), Command: func(args []string) []string {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.ran = append(w.ran, args)
		return []string{command}
	}}).svc
	t.Cleanup(func() { _, _ = w.DestroySandbox(context.Background(), &agentapi.DestroySandboxRequest{}) })
	w.warmRoot = func() (string, func() error, error) {
		return t.TempDir(), func() error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.cleaned = true
			return nil
		}, nil
	}
	w.forTemplate = func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.spared = true
	}
	return w
}

func (w *warmService) noContainers(t *testing.T) {
	t.Helper()
	w.service.mu.Lock()
	defer w.service.mu.Unlock()
	if len(w.containers) != 0 {
		t.Fatalf("containers left after the warm-up: %v", w.containers)
	}
}

// A template's agent runs one container (busybox true, through the same
// create, start, wait and remove as a pod's) before the VM is saved, and
// leaves neither the container nor its root behind.
func TestPrepareTemplateWarmsUp(t *testing.T) {
	w := newWarmService(t, "true")
	if _, err := w.PrepareTemplate(context.Background(), &agentapi.Empty{}); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ran) != 1 || strings.Join(w.ran[0], " ") != "/bin/busybox true" {
		t.Fatalf("the warm-up ran %q; want one /bin/busybox true", w.ran)
	}
	if !w.cleaned || !w.spared {
		t.Fatalf("root cleaned up %v, next hang-up spared %v; want both", w.cleaned, w.spared)
	}
	w.noContainers(t)
	if _, err := w.lookup(warmUpID); status.Code(err) != codes.NotFound {
		t.Fatalf("the warm-up container after PrepareTemplate: %v; want NotFound", err)
	}
}

// A warm-up container that fails fails PrepareTemplate (the host then
// makes no template and pods boot cold), still cleans up, and does not
// spare the next hang-up: a VM that will not be saved powers off as usual.
func TestPrepareTemplateWarmUpFails(t *testing.T) {
	w := newWarmService(t, "false")
	_, err := w.PrepareTemplate(context.Background(), &agentapi.Empty{})
	if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "warm-up container exited with status 1") {
		t.Fatalf("PrepareTemplate with a failing warm-up: %v; want Internal naming its exit", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.cleaned || w.spared {
		t.Fatalf("root cleaned up %v, next hang-up spared %v; want cleaned, not spared", w.cleaned, w.spared)
	}
	w.noContainers(t)
}

// A guest with nothing to warm up with (an initrd without busybox) still
// makes a template: the warm-up is skipped, not failed.
func TestPrepareTemplateWithoutWarmUpBinary(t *testing.T) {
	w := newWarmService(t, "true")
	w.warmRoot = func() (string, func() error, error) { return "", nil, errNoWarmUp }
	if _, err := w.PrepareTemplate(context.Background(), &agentapi.Empty{}); err != nil {
		t.Fatalf("PrepareTemplate without a warm-up binary: %v", err)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.ran) != 0 || !w.spared {
		t.Fatalf("ran %q, next hang-up spared %v; want nothing run, spared", w.ran, w.spared)
	}
	w.noContainers(t)
}
