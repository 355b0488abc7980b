//go:build integration

package client

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// clientNamespace is where containerd's Go client works: ctrenv imports the
// busybox image there.
const clientNamespace = "default"

// goClient connects containerd's Go client to d.
func goClient(t *testing.T, d *daemon) (*containerd.Client, context.Context) {
	t.Helper()
	c, err := containerd.New(d.Sock, containerd.WithDefaultNamespace(clientNamespace), containerd.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatalf("containerd client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, namespaces.WithNamespace(context.Background(), clientNamespace)
}

// forEachRuntime runs one scenario on runc and on kata-go, on the same
// daemon, as subtests named after the runtime: a difference from runc shows
// as a failing kata subtest with runc's passing beside it.
func forEachRuntime(t *testing.T, f func(t *testing.T, rt string)) {
	for _, rt := range []string{runcRuntime, kataRuntime} {
		t.Run(rtName(rt), func(t *testing.T) { f(t, rt) })
	}
}

func rtName(rt string) string {
	if rt == runcRuntime {
		return "runc"
	}
	return "kata"
}

// newContainer creates a busybox container running args on runtime rt,
// with extra spec options. It, its snapshot and any task left in it are
// removed at cleanup.
func newContainer(t *testing.T, ctx context.Context, c *containerd.Client, rt, id string, args []string, opts ...oci.SpecOpts) containerd.Container {
	t.Helper()
	img, err := c.GetImage(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	spec := append([]oci.SpecOpts{oci.WithImageConfig(img), oci.WithProcessArgs(args...)}, opts...)
	ctr, err := c.NewContainer(ctx, id,
		containerd.WithImage(img),
		containerd.WithNewSnapshot(id+"-snap", img),
		containerd.WithRuntime(rt, nil),
		containerd.WithNewSpec(spec...))
	if err != nil {
		t.Fatalf("new container %s on %s: %v", id, rt, err)
	}
	t.Cleanup(func() { removeContainer(t, ctr) })
	return ctr
}

// removeContainer kills and deletes whatever task is left, then the
// container and its snapshot, bounded so a stuck runtime fails the test
// instead of hanging it.
func removeContainer(t *testing.T, ctr containerd.Container) {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), clientNamespace), 60*time.Second)
	defer cancel()
	if task, err := ctr.Task(ctx, nil); err == nil {
		_ = task.Kill(ctx, syscall.SIGKILL)
		if _, err := task.Delete(ctx, containerd.WithProcessKill); err != nil {
			t.Errorf("delete task %s: %v", ctr.ID(), err)
		}
	}
	if err := ctr.Delete(ctx, containerd.WithSnapshotCleanup); err != nil {
		t.Errorf("delete container %s: %v", ctr.ID(), err)
	}
}

var idSeq atomic.Int64

// uniqueID names a container for one runtime in one test run.
func uniqueID(rt string) string {
	return fmt.Sprintf("gc-%s-%d-%d", rtName(rt), time.Now().UnixNano()%1e6, idSeq.Add(1))
}

// waitExit waits for an exit from ch, failing the test after limit.
func waitExit(t *testing.T, ch <-chan containerd.ExitStatus, limit time.Duration) containerd.ExitStatus {
	t.Helper()
	select {
	case st := <-ch:
		return st
	case <-time.After(limit):
		t.Fatalf("no exit within %s", limit)
		return containerd.ExitStatus{}
	}
}

// startTask creates ctr's task with creator, then runs it (see run).
func startTask(t *testing.T, ctx context.Context, ctr containerd.Container, creator cio.Creator) (containerd.Task, <-chan containerd.ExitStatus) {
	t.Helper()
	task, err := ctr.NewTask(ctx, creator)
	if err != nil {
		t.Fatal(err)
	}
	return task, run(t, ctx, task)
}

// startExec creates the exec process id in task, then runs it (see run).
func startExec(t *testing.T, ctx context.Context, task containerd.Task, id string, spec *specs.Process, creator cio.Creator) (containerd.Process, <-chan containerd.ExitStatus) {
	t.Helper()
	p, err := task.Exec(ctx, id, spec, creator)
	if err != nil {
		t.Fatal(err)
	}
	return p, run(t, ctx, p)
}

// run subscribes to p's exit, then starts it: Wait before Start, as
// containerd's own tests do, so a fast exit cannot be missed.
func run(t *testing.T, ctx context.Context, p containerd.Process) <-chan containerd.ExitStatus {
	t.Helper()
	exitCh, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return exitCh
}
