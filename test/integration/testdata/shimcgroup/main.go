// Command shimcgroup creates one task through containerd's Go client with
// client.WithShimCgroup, the way a Go client asks for a shim cgroup, for
// the integration tests. It is its own module: containerd 2's client
// needs dependencies kata-go itself does not take.
//
// It prints "ready" once the task runs, waits for its stdin to close, then
// kills and deletes the task and the container.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/cio"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
)

func main() {
	address := flag.String("address", "", "containerd socket")
	runtime := flag.String("runtime", "", "runtime type")
	id := flag.String("id", "", "container id")
	image := flag.String("image", "", "image (imported in namespace default)")
	shimCgroup := flag.String("shim-cgroup", "", "the shim's cgroup")
	cgroup := flag.String("cgroup", "", "the task's linux.cgroupsPath")
	flag.Parse()
	if err := run(*address, *runtime, *id, *image, *shimCgroup, *cgroup); err != nil {
		fmt.Fprintln(os.Stderr, "shimcgroup:", err)
		os.Exit(1)
	}
}

func run(address, runtime, id, image, shimCgroup, cgroup string) error {
	c, err := client.New(address)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), "default"), 5*time.Minute)
	defer cancel()
	img, err := c.GetImage(ctx, image)
	if err != nil {
		return err
	}
	ctr, err := c.NewContainer(ctx, id, client.WithNewSnapshot(id, img), client.WithRuntime(runtime, nil),
		client.WithNewSpec(oci.WithImageConfig(img), oci.WithProcessArgs("sleep", "1000"), oci.WithCgroup(cgroup)))
	if err != nil {
		return err
	}
	defer func() { _ = ctr.Delete(context.WithoutCancel(ctx), client.WithSnapshotCleanup) }()
	task, err := ctr.NewTask(ctx, cio.NullIO, client.WithShimCgroup(shimCgroup))
	if err != nil {
		return fmt.Errorf("new task with shim cgroup %s: %w", shimCgroup, err)
	}
	defer func() { _, _ = task.Delete(context.WithoutCancel(ctx), client.WithProcessKill) }()
	if err := task.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	exited, err := task.Wait(ctx)
	if err != nil {
		return err
	}
	if err := task.Kill(ctx, syscall.SIGKILL); err != nil {
		return err
	}
	<-exited
	return nil
}
