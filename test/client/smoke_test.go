//go:build integration

package client

import (
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/cio"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

// TestGoClientSmoke runs one container to its exit through containerd's Go
// client on both runtimes: the base every same-as-runc scenario builds on.
func TestGoClientSmoke(t *testing.T) {
	for _, spec := range ctrenv.Specs() {
		t.Run(spec.Name, func(t *testing.T) {
			d := startDaemon(t, spec)
			c, ctx := goClient(t, d)
			forEachRuntime(t, func(t *testing.T, rt string) {
				ctr := newContainer(t, ctx, c, rt, uniqueID(rt), []string{"sh", "-c", "exit 7"})
				task, exitCh := startTask(t, ctx, ctr, cio.NullIO)
				if st := waitExit(t, exitCh, time.Minute); st.ExitCode() != 7 {
					t.Fatalf("exit code %d, want 7", st.ExitCode())
				}
				if _, err := task.Delete(ctx); err != nil {
					t.Fatal(err)
				}
			})
			d.assertClean(t)
		})
	}
}
