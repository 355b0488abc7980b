//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

// crictl runs crictl against the daemon's CRI socket.
func crictl(t *testing.T, d *daemon, args ...string) string {
	t.Helper()
	out, err := crictlErr(d, args...)
	if err != nil {
		t.Fatalf("crictl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

func crictlErr(d *daemon, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.CrictlPath(), append([]string{"-r", "unix://" + d.sock, "-t", "60s"}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out) + stderr.String(), err
	}
	return string(out), nil
}

func writeJSON(t *testing.T, path string, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(b))
	return path
}

// runPod starts a pod with runtime handler kata and returns its id, IP and
// config file (which container creates must pass again: CRI takes the log
// directory from it).
func runPod(t *testing.T, d *daemon, name string) (string, string, string) {
	t.Helper()
	id, pod := startPod(t, d, name, false)
	var insp struct {
		Status struct {
			Network struct{ IP string }
		}
	}
	if err := json.Unmarshal([]byte(crictl(t, d, "inspectp", id)), &insp); err != nil {
		t.Fatal(err)
	}
	return id, insp.Status.Network.IP, pod
}

func createContainer(t *testing.T, d *daemon, podID, pod, name string, cmd ...string) string {
	t.Helper()
	id, err := startContainer(t, d, podID, pod, name, ctrOpts{}, cmd...)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// TestCRIPod: a pod with two containers is one VM and one shim; exec and
// logs work; two pods reach each other over the CNI bridge; stopping and
// removing the pods leaves nothing.
func TestCRIPod(t *testing.T) {
	for _, spec := range daemons() {
		t.Run(spec.Name, func(t *testing.T) { testCRIPod(t, spec) })
	}
}

// startPod starts a pod with runtime handler kata (privileged: its
// containers may be privileged) and returns its id and config file.
func startPod(t *testing.T, d *daemon, name string, privileged bool) (string, string) {
	t.Helper()
	dir := t.TempDir()
	pod := writeJSON(t, filepath.Join(dir, "pod.json"), map[string]any{
		"metadata":      map[string]any{"name": name, "namespace": "default", "uid": name + "-uid", "attempt": 1},
		"hostname":      name,
		"log_directory": filepath.Join(dir, "logs"),
		"linux":         map[string]any{"security_context": map[string]any{"privileged": privileged}},
	})
	id := crictl(t, d, "runp", "--runtime", "kata", pod)
	// CRI made a network namespace for the pod: free it even if the test fails.
	t.Cleanup(func() {
		_, _ = crictlErr(d, "stopp", id)
		_, _ = crictlErr(d, "rmp", "-f", id)
	})
	return id, pod
}

// startCRI starts a private containerd with its CRI plugin and CNI.
func startCRI(t *testing.T, spec ctrenv.Spec) *daemon {
	t.Helper()
	testenv.Need(t, "crictl", "make deps builds it into /var/cache/kata-go/cri-tools", testenv.Exists(testenv.CrictlPath()))
	testenv.Need(t, "/usr/lib/cni/bridge", "apt-get install containernetworking-plugins", testenv.Exists("/usr/lib/cni/bridge"))
	return startDaemonWith(t, spec, ctrenv.Options{CRI: true})
}

func testCRIPod(t *testing.T, spec ctrenv.Spec) {
	d := startCRI(t, spec)
	netnsBefore, _ := filepath.Glob("/run/netns/cni-*")

	pod1, ip1, cfg1 := runPod(t, d, "pod1")
	c1 := createContainer(t, d, pod1, cfg1, "c1", "sh", "-c", "echo hello-from-c1; sleep 1000")
	c2 := createContainer(t, d, pod1, cfg1, "c2", "sleep", "1000")
	shims := ctrenv.Pids(d.sock, "containerd-shim-kata-v2")
	qemus := ctrenv.Pids(d.stateRoot, "qemu-system")
	if len(shims) != 1 || len(qemus) != 1 {
		t.Fatalf("pod with two containers: %d shims, %d VMs; want 1 and 1", len(shims), len(qemus))
	}
	if out := crictl(t, d, "exec", "-s", c2, "sh", "-c", "echo exec-ok; hostname"); !strings.Contains(out, "exec-ok") || !strings.Contains(out, "pod1") {
		t.Fatalf("exec in c2: %q", out)
	}
	// The pod's /dev/shm is one guest tmpfs shared by its containers.
	crictl(t, d, "exec", "-s", c1, "sh", "-c", "echo shared > /dev/shm/probe")
	if out := crictl(t, d, "exec", "-s", c2, "cat", "/dev/shm/probe"); out != "shared" {
		t.Fatalf("c2 sees /dev/shm/probe as %q", out)
	}
	if out := crictl(t, d, "exec", "-s", c2, "grep", " /dev/shm ", "/proc/mounts"); !strings.HasPrefix(out, "tmpfs ") {
		t.Fatalf("/dev/shm in the guest is %q, want a tmpfs", out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(crictl(t, d, "logs", c1), "hello-from-c1") {
		if time.Now().After(deadline) {
			t.Fatalf("logs of c1: %q", crictl(t, d, "logs", c1))
		}
		time.Sleep(100 * time.Millisecond)
	}

	pod2, ip2, cfg2 := runPod(t, d, "pod2")
	c3 := createContainer(t, d, pod2, cfg2, "c3", "sleep", "1000")
	if ip1 == "" || ip2 == "" {
		t.Fatalf("pod IPs %q %q", ip1, ip2)
	}
	if out, err := crictlErr(d, "exec", "-s", c3, "ping", "-c", "2", "-W", "10", ip1); err != nil || !strings.Contains(out, "2 packets received") {
		t.Fatalf("pod2 -> pod1 (%s): %v %s", ip1, err, out)
	}
	if out, err := crictlErr(d, "exec", "-s", c1, "ping", "-c", "2", "-W", "10", ip2); err != nil || !strings.Contains(out, "2 packets received") {
		t.Fatalf("pod1 -> pod2 (%s): %v %s", ip2, err, out)
	}

	for _, p := range []string{pod1, pod2} {
		crictl(t, d, "stopp", p)
		crictl(t, d, "rmp", p)
	}
	if err := d.WaitClean(15 * time.Second); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{pod1, pod2} {
		if out, _ := crictlErr(d, "pods", "-q", "--id", p); strings.TrimSpace(out) != "" {
			t.Fatalf("pod %s still listed", p)
		}
	}
	if after, _ := filepath.Glob("/run/netns/cni-*"); len(after) != len(netnsBefore) {
		t.Fatalf("pod network namespaces: %d before, %d after", len(netnsBefore), len(after))
	}
	if left := ctrenv.Pids("tap0_kata"); len(left) > 0 {
		t.Fatalf("processes naming a tap: %v", left)
	}
	fmt.Fprintln(os.Stderr, "pods", pod1, pod2, "cleaned")
}
