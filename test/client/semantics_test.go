//go:build integration

package client

import (
	"context"
	"errors"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

// Task semantics as containerd's runc shim defines them (docs/semantics.md),
// each scenario run on runc and kata-go on the same daemon, on both
// daemons: a kata answer that differs from runc's fails beside runc's.

// sleeper is a long-running init.
var sleeper = []string{"sleep", "3600"}

// onBothDaemons runs f for each runtime on each daemon.
func onBothDaemons(t *testing.T, f func(t *testing.T, ctx context.Context, c *containerd.Client, rt string)) {
	for _, spec := range ctrenv.Specs() {
		t.Run(spec.Name, func(t *testing.T) {
			d := startDaemon(t, spec)
			c, ctx := goClient(t, d)
			forEachRuntime(t, func(t *testing.T, rt string) { f(t, ctx, c, rt) })
			d.assertClean(t)
		})
	}
}

// runningTask starts args in a new container of rt and returns its task
// and exit channel.
func runningTask(t *testing.T, ctx context.Context, c *containerd.Client, rt string, args []string) (containerd.Task, <-chan containerd.ExitStatus) {
	t.Helper()
	ctr := newContainer(t, ctx, c, rt, uniqueID(rt), args)
	return startTask(t, ctx, ctr, cio.NullIO)
}

// execSpec is the container's process with other args.
func execSpec(t *testing.T, ctx context.Context, task containerd.Task, args ...string) *specs.Process {
	t.Helper()
	spec, err := task.Spec(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p := *spec.Process
	p.Args = args
	p.Terminal = false
	return &p
}

// wantClass fails unless err carries the errdefs class is names.
func wantClass(t *testing.T, what string, err error, name string, is func(error) bool) {
	t.Helper()
	if err == nil || !is(err) {
		t.Fatalf("%s: %v, want %s (runc's answer)", what, err, name)
	}
}

// Kill, wait for the exit, kill again: the second is NotFound
// ("process already finished"), as containerd's TestContainerKill... tests
// and CRI's stop rely on.
func TestSemanticsKillTwice(t *testing.T) {
	onBothDaemons(t, func(t *testing.T, ctx context.Context, c *containerd.Client, rt string) {
		task, exitCh := runningTask(t, ctx, c, rt, sleeper)
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if st := waitExit(t, exitCh, time.Minute); st.ExitCode() != 137 {
			t.Fatalf("exit %d after SIGKILL, want 137", st.ExitCode())
		}
		wantClass(t, "second kill", task.Kill(ctx, syscall.SIGTERM), "NotFound", errdefs.IsNotFound)
		if _, err := task.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// Kill after the runtime's state of the container is gone: containerd's
// TestKillContainerDeletedByRunc removes the container with `runc delete
// --force` under the shim. kata-go's runtime state of a container lives in
// its VM (the agent's container, its processes); the host-side way to make
// it vanish under the shim is to end the VM, whose host pid is the task's
// pid. Both answer the kill NotFound and report the exit promptly.
func TestSemanticsKillAfterRuntimeStateGone(t *testing.T) {
	onBothDaemons(t, func(t *testing.T, ctx context.Context, c *containerd.Client, rt string) {
		id := uniqueID(rt)
		var ctr containerd.Container
		runcRoot := t.TempDir()
		if rt == runcRuntime {
			ctr = newContainerWithRuntimeOptions(t, ctx, c, rt, id, sleeper, &runcoptions.Options{Root: runcRoot})
		} else {
			ctr = newContainer(t, ctx, c, rt, id, sleeper)
		}
		task, exitCh := startTask(t, ctx, ctr, cio.NullIO)
		if rt == runcRuntime {
			out, err := exec.Command("runc", "--root", filepath.Join(runcRoot, clientNamespace), "delete", "--force", id).CombinedOutput()
			if err != nil {
				t.Fatalf("runc delete --force: %v: %s", err, out)
			}
		} else if err := syscall.Kill(int(task.Pid()), syscall.SIGKILL); err != nil {
			t.Fatalf("kill the VMM (pid %d): %v", task.Pid(), err)
		}
		wantClass(t, "kill after the runtime state is gone", task.Kill(ctx, syscall.SIGKILL), "NotFound", errdefs.IsNotFound)
		waitExit(t, exitCh, 10*time.Second)
	})
}

// newContainerWithRuntimeOptions is newContainer with options for the
// runtime (runc's root, so the test can find the container under it).
func newContainerWithRuntimeOptions(t *testing.T, ctx context.Context, c *containerd.Client, rt, id string, args []string, opts any) containerd.Container {
	t.Helper()
	img, err := c.GetImage(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	ctr, err := c.NewContainer(ctx, id,
		containerd.WithImage(img),
		containerd.WithNewSnapshot(id+"-snap", img),
		containerd.WithRuntime(rt, opts),
		containerd.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs(args...)))
	if err != nil {
		t.Fatalf("new container %s on %s: %v", id, rt, err)
	}
	t.Cleanup(func() { removeContainer(t, ctr) })
	return ctr
}

// The exit time is after the client's time.Now() taken just before Start
// (containerd's TestContainerExitedAtSet), in Wait's answer and in Status.
func TestSemanticsExitTimeAfterStart(t *testing.T) {
	onBothDaemons(t, func(t *testing.T, ctx context.Context, c *containerd.Client, rt string) {
		ctr := newContainer(t, ctx, c, rt, uniqueID(rt), []string{"true"})
		task, err := ctr.NewTask(ctx, cio.NullIO)
		if err != nil {
			t.Fatal(err)
		}
		exitCh, err := task.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		before := time.Now()
		if err := task.Start(ctx); err != nil {
			t.Fatal(err)
		}
		st := waitExit(t, exitCh, time.Minute)
		if !st.ExitTime().After(before) {
			t.Errorf("Wait: exit at %v, not after the Start asked at %v", st.ExitTime(), before)
		}
		s, err := task.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !s.ExitTime.After(before) || s.ExitTime.After(time.Now()) {
			t.Errorf("Status: exit at %v, want in (%v, now]", s.ExitTime, before)
		}
		if _, err := task.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

// 100 execs in a row with one id, each waited for and deleted: the id is
// free again each time (containerd's clients reuse ids).
func TestSemanticsExecIDReuse(t *testing.T) {
	const rounds = 100
	onBothDaemons(t, func(t *testing.T, ctx context.Context, c *containerd.Client, rt string) {
		task, exitCh := runningTask(t, ctx, c, rt, sleeper)
		spec := execSpec(t, ctx, task, "true")
		for i := range rounds {
			p, err := task.Exec(ctx, "same", spec, cio.NullIO)
			if err != nil {
				t.Fatalf("round %d: exec: %v", i, err)
			}
			ch, err := p.Wait(ctx)
			if err != nil {
				t.Fatalf("round %d: wait: %v", i, err)
			}
			if err := p.Start(ctx); err != nil {
				t.Fatalf("round %d: start: %v", i, err)
			}
			if st := waitExit(t, ch, time.Minute); st.ExitCode() != 0 {
				t.Fatalf("round %d: exit %d", i, st.ExitCode())
			}
			if _, err := p.Delete(ctx); err != nil {
				t.Fatalf("round %d: delete: %v", i, err)
			}
		}
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitExit(t, exitCh, time.Minute)
	})
}

// An exec into a paused task is refused as runc's shim refuses it: with an
// error of no class (codes.Unknown, "cannot exec in a paused state").
// After the resume the same exec goes through.
func TestSemanticsExecIntoPausedRefused(t *testing.T) {
	onBothDaemons(t, func(t *testing.T, ctx context.Context, c *containerd.Client, rt string) {
		task, exitCh := runningTask(t, ctx, c, rt, sleeper)
		if err := task.Pause(ctx); err != nil {
			t.Fatal(err)
		}
		_, err := task.Exec(ctx, "while-paused", execSpec(t, ctx, task, "true"), cio.NullIO)
		wantClass(t, "exec into a paused task", err, "Unknown (no class)", errdefs.IsUnknown)
		if err := task.Resume(ctx); err != nil {
			t.Fatal(err)
		}
		p, err := task.Exec(ctx, "while-paused", execSpec(t, ctx, task, "true"), cio.NullIO)
		if err != nil {
			t.Fatalf("exec after resume: %v", err)
		}
		if _, err := p.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitExit(t, exitCh, time.Minute)
	})
}

// An exec with the id of one still running is AlreadyExists.
func TestSemanticsExecIDInUse(t *testing.T) {
	onBothDaemons(t, func(t *testing.T, ctx context.Context, c *containerd.Client, rt string) {
		task, exitCh := runningTask(t, ctx, c, rt, sleeper)
		p, pch := startExec(t, ctx, task, "busy", execSpec(t, ctx, task, "sleep", "3600"), cio.NullIO)
		_, err := task.Exec(ctx, "busy", execSpec(t, ctx, task, "true"), cio.NullIO)
		wantClass(t, "exec with a running exec's id", err, "AlreadyExists", errdefs.IsAlreadyExists)
		if err := p.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitExit(t, pch, time.Minute)
		if _, err := p.Delete(ctx); err != nil && !errors.Is(err, errdefs.ErrNotFound) {
			t.Fatal(err)
		}
		if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitExit(t, exitCh, time.Minute)
	})
}
