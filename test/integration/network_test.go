//go:build integration

package integration

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"

	"github.com/vishvananda/netns"
)

// netns runs `ip` inside (or on) namespaces the test owns.
func ip(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// podNetwork makes a pod namespace and a peer namespace joined by a veth
// pair (10.199.0.2 in the pod, 10.199.0.1 in the peer), as CNI would.
func podNetwork(t *testing.T) (pod, peer string) {
	t.Helper()
	testenv.Need(t, "ip (iproute2)", "apt-get install iproute2", testenv.OnPath("ip"))
	suffix := fmt.Sprint(os.Getpid())
	pod, peer = "kgo-pod-"+suffix, "kgo-peer-"+suffix
	ip(t, "netns", "add", pod)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", pod).Run() })
	ip(t, "netns", "add", peer)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", peer).Run() })
	ip(t, "-n", pod, "link", "add", "eth0", "type", "veth", "peer", "name", "veth-peer", "netns", peer)
	ip(t, "-n", pod, "addr", "add", "10.199.0.2/24", "dev", "eth0")
	ip(t, "-n", pod, "link", "set", "eth0", "up")
	ip(t, "-n", pod, "link", "set", "lo", "up")
	ip(t, "-n", peer, "addr", "add", "10.199.0.1/24", "dev", "veth-peer")
	ip(t, "-n", peer, "link", "set", "veth-peer", "up")
	ip(t, "-n", pod, "route", "add", "default", "via", "10.199.0.1")
	return pod, peer
}

// TestPodNetwork: a container in a VM joined to a CNI-style namespace
// reaches the peer and is reachable from it; teardown removes the tap and
// the filters. Only addresses in namespaces this test made are used.
func TestPodNetwork(t *testing.T) {
	d := startDaemon(t, daemons()[0])
	for _, model := range []string{"tcfilter", "macvtap"} {
		t.Run(model, func(t *testing.T) { testPodNetwork(t, d, model) })
	}
}

func testPodNetwork(t *testing.T, d *daemon, model string) {
	pod, peer := podNetwork(t)
	nsPath := "/var/run/netns/" + pod
	cfg := filepath.Join(t.TempDir(), "kata.toml")
	writeFile(t, cfg, fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n[runtime]\nstate_root = %q\nnetwork_model = %q\n",
		testenv.GuestFile("vmlinux"), testenv.GuestFile("initrd.img"), d.stateRoot, model))
	if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, "--runtime-config-path", cfg, "--with-ns", "network:"+nsPath, image, "net",
		"sh", "-c", "echo hello-from-guest > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"); err != nil {
		t.Fatalf("run: %v %s", err, e)
	}
	d.waitStatus(t, "net", "RUNNING")
	links := ip(t, "-n", pod, "link")
	if !strings.Contains(links, "tap0_kata") {
		t.Fatalf("no tap in the pod namespace:\n%s", links)
	}
	if model == "tcfilter" {
		if f, err := exec.Command("tc", "-n", pod, "filter", "show", "dev", "eth0", "ingress").CombinedOutput(); err != nil || !strings.Contains(string(f), "mirred") {
			t.Fatalf("no mirred redirect on eth0: %v\n%s", err, f)
		}
	}
	out, e, err := d.ctr("task", "exec", "--exec-id", "ping", "net", "ping", "-c", "2", "-W", "10", "10.199.0.1")
	if err != nil || !strings.Contains(out, "2 packets received") {
		t.Fatalf("container -> peer: %v %s %s", err, out, e)
	}
	if o, err := exec.Command("ip", "netns", "exec", peer, "/bin/busybox", "ping", "-c", "2", "-W", "10", "10.199.0.2").CombinedOutput(); err != nil {
		t.Fatalf("peer -> container: %v %s", err, o)
	}
	out, _, _ = d.ctr("task", "exec", "--exec-id", "addr", "net", "ip", "addr")
	if !strings.Contains(out, "10.199.0.2/24") {
		t.Fatalf("guest address:\n%s", out)
	}
	// What CRI's port-forward does: dial localhost inside the pod's
	// namespace on the host. The tc model carries it to the guest.
	if model == "tcfilter" {
		o, err := httpGetIn(nsPath, "127.0.0.1:8080", "/index.html")
		if err != nil || !strings.Contains(o, "hello-from-guest") {
			t.Fatalf("localhost:8080 in the pod namespace did not reach the guest: %v %s", err, o)
		}
	}
	d.remove("net")
	d.assertClean(t)
	links = ip(t, "-n", pod, "link")
	if strings.Contains(links, "tap0_kata") {
		t.Fatalf("tap left after delete:\n%s", links)
	}
	if q, _ := exec.Command("tc", "-n", pod, "qdisc", "show", "dev", "eth0").CombinedOutput(); strings.Contains(string(q), "ingress") {
		t.Fatalf("ingress qdisc left on eth0:\n%s", q)
	}
	n, err := exec.Command("ip", "netns", "exec", pod, "iptables", "-t", "nat", "-S").CombinedOutput()
	if err != nil || strings.Contains(string(n), "169.254.255") {
		t.Fatalf("port-forward NAT rules left in the pod namespace (%v):\n%s", err, n)
	}
}

// httpGetIn fetches path from addr, dialing from inside the network
// namespace at nsPath (on a locked thread, as containerd's port-forward
// does).
func httpGetIn(nsPath, addr, path string) (string, error) {
	type result struct {
		body string
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		// The thread stays in the pod namespace: never unlock it, so Go
		// retires it when this goroutine ends.
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			ch <- result{err: err}
			return
		}
		c, err := net.DialTimeout("tcp4", addr, 10*time.Second)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\n\r\n", path)
		b, err := io.ReadAll(c)
		ch <- result{string(b), err}
	}()
	r := <-ch
	return r.body, r.err
}
