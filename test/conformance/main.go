// Command conformance runs cri-tools' critest against kata-go through a
// private containerd, for each containerd build (`make conformance`).
//
// critest pulls about twenty images from registry.k8s.io and gcr.io. This
// machine has no route to them, so the run builds stand-ins (internal/
// ociimage), serves them from a distribution registry on 127.0.0.1 and
// makes containerd use it as a mirror of those registries.
//
// It prints pass/fail counts per daemon and handler, writes a Markdown
// report, and exits non-zero when a spec fails that known-failures.toml
// does not explain.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

func main() {
	var (
		cacheDir = flag.String("deps", "/var/cache/kata-go/conformance", "critest, registry and busybox from hack/conformance-deps.sh")
		crictl   = flag.String("crictl", "/var/cache/kata-go/cri-tools/crictl", "crictl from make deps, to remove pods critest leaves")
		shimDir  = flag.String("shim-dir", "bin", "directory holding containerd-shim-kata-v2")
		kernel   = flag.String("kernel", "guest/out/vmlinux", "guest kernel")
		initrd   = flag.String("initrd", "guest/out/initrd.img", "guest initrd")
		daemons  = flag.String("daemons", "containerd-1.6,containerd-2.4", "containerd builds to run against")
		handlers = flag.String("handlers", "kata", "CRI runtime handlers to test (runc gives the reference)")
		focus    = flag.String("focus", "", "only specs matching this regexp (ginkgo.focus)")
		report   = flag.String("report", "conformance-report.md", "Markdown report written at the end")
		keep     = flag.Bool("keep", false, "keep the work directory (critest logs, registry log)")
	)
	flag.Parse()
	// A closed stdout (| head) must not kill the run before it has
	// stopped its daemon, VMs and registry.
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ok, err := run(ctx, config{
		deps: *cacheDir, crictl: *crictl, shimDir: *shimDir, kernel: *kernel, initrd: *initrd,
		daemons: strings.Split(*daemons, ","), handlers: strings.Split(*handlers, ","),
		focus: *focus, report: *report, keep: *keep,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "conformance:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

type config struct {
	deps, crictl, shimDir, kernel, initrd string
	daemons, handlers                     []string
	focus, report                         string
	keep                                  bool
}

// outcome is one critest run.
type outcome struct {
	daemon, handler string
	results         []result
	// strayPods are pods critest itself did not remove.
	strayPods []string
	leftovers []string
	elapsed   time.Duration
}

func run(ctx context.Context, c config) (bool, error) {
	if os.Geteuid() != 0 {
		return false, fmt.Errorf("needs root: containerd, QEMU, CNI and mounts")
	}
	known, err := loadKnown()
	if err != nil {
		return false, err
	}
	for _, p := range []string{c.kernel, c.initrd, filepath.Join(c.shimDir, "containerd-shim-kata-v2"), c.crictl,
		filepath.Join(c.deps, "critest"), filepath.Join(c.deps, "registry"), filepath.Join(c.deps, "busybox-root/bin/busybox")} {
		if _, err := os.Stat(p); err != nil {
			return false, fmt.Errorf("missing %s (make build guest, hack/conformance-deps.sh): %w", p, err)
		}
	}
	// The shim reads these from the daemon's config, from another cwd.
	shimDir, err := filepath.Abs(c.shimDir)
	if err == nil {
		c.kernel, err = filepath.Abs(c.kernel)
	}
	if err == nil {
		c.initrd, err = filepath.Abs(c.initrd)
	}
	if err != nil {
		return false, err
	}
	work, err := os.MkdirTemp("", "kgo-conformance-")
	if err != nil {
		return false, err
	}
	if c.keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}

	testbin := filepath.Join(work, "testbin")
	build := exec.CommandContext(ctx, "go", "build", "-o", testbin, "./test/conformance/testbin")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return false, fmt.Errorf("build testbin: %w: %s", err, out)
	}
	images, err := buildImages(filepath.Join(c.deps, "busybox-root/bin/busybox"), testbin)
	if err != nil {
		return false, err
	}
	reg, err := startRegistry(filepath.Join(c.deps, "registry"), work)
	if err != nil {
		return false, err
	}
	defer reg.stop()
	if err := reg.push(ctx, images); err != nil {
		return false, err
	}
	hosts := filepath.Join(work, "certs.d")
	if err := reg.writeHosts(hosts, images); err != nil {
		return false, err
	}
	fmt.Printf("registry %s serves %d test images\n", reg.addr, len(images))

	specs := map[string]ctrenv.Spec{}
	for _, s := range ctrenv.Specs() {
		specs[s.Name] = s
	}
	var outcomes []outcome
	for _, name := range c.daemons {
		spec, found := specs[name]
		if !found {
			return false, fmt.Errorf("unknown daemon %q", name)
		}
		for _, h := range c.handlers {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			o, err := runOne(ctx, c, spec, h, shimDir, hosts, work)
			if err != nil {
				return false, fmt.Errorf("%s/%s: %w", name, h, err)
			}
			outcomes = append(outcomes, o)
		}
	}
	return summarize(os.Stdout, c.report, outcomes, known)
}

// runOne starts a fresh daemon so each run begins with no images and no
// pods, runs critest, and checks that nothing of the handler's is left.
func runOne(ctx context.Context, c config, spec ctrenv.Spec, handler, shimDir, hosts, work string) (outcome, error) {
	o := outcome{daemon: spec.Name, handler: handler}
	if _, err := os.Stat(spec.Containerd); err != nil {
		return o, fmt.Errorf("%s missing (%s): %w", spec.Containerd, spec.Why, err)
	}
	d, err := ctrenv.Start(spec, ctrenv.Options{
		ShimDir: shimDir, Kernel: c.kernel, Initrd: c.initrd, CRI: true, PortMap: true,
		SandboxImage: "registry.k8s.io/pause:3.9", RegistryHosts: hosts,
	})
	if err != nil {
		return o, err
	}
	defer d.Stop()
	dir := filepath.Join(work, spec.Name+"-"+handler)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return o, err
	}
	var extra []string
	if c.focus != "" {
		extra = append(extra, "-ginkgo.focus", c.focus)
	}
	fmt.Printf("== critest on %s, handler %s\n", spec.Name, handler)
	start := time.Now()
	o.results, err = runCritest(ctx, filepath.Join(c.deps, "critest"), d.Sock, handler, dir, extra, os.Stdout)
	o.elapsed = time.Since(start)
	if err != nil {
		return o, err
	}
	// A spec that fails before it records its pod's id leaves the pod to
	// no one. Remove such pods through CRI, as a kubelet would, so the
	// check below finds only what kata-go failed to clean up.
	o.strayPods, err = removePods(ctx, c.crictl, d.Sock)
	if err != nil {
		return o, err
	}
	if err := d.WaitClean(30 * time.Second); err != nil {
		o.leftovers = d.Leftovers()
	}
	o.leftovers = append(o.leftovers, leftNetns()...)
	if err := os.WriteFile(filepath.Join(dir, "containerd.log"), []byte(d.Log.String()), 0o644); err != nil {
		return o, err
	}
	return o, nil
}

// removePods stops and removes every pod, returning their ids.
func removePods(ctx context.Context, crictl, sock string) ([]string, error) {
	ep := "unix://" + sock
	out, err := exec.CommandContext(ctx, crictl, "-r", ep, "-i", ep, "pods", "-q").Output()
	if err != nil {
		return nil, fmt.Errorf("crictl pods: %w", err)
	}
	ids := strings.Fields(string(out))
	if len(ids) == 0 {
		return nil, nil
	}
	if out, err := exec.CommandContext(ctx, crictl, "-r", ep, "-i", ep, "rmp", "-f", "-a").CombinedOutput(); err != nil {
		return ids, fmt.Errorf("crictl rmp -fa: %w: %s", err, out)
	}
	return ids, nil
}

// leftNetns lists pod network namespaces CRI did not remove.
func leftNetns() []string {
	out, _ := exec.Command("ip", "netns", "list").Output()
	var left []string
	for _, l := range strings.Split(string(out), "\n") {
		if f := strings.Fields(l); len(f) > 0 && strings.HasPrefix(f[0], "cni-") {
			left = append(left, "netns "+f[0])
		}
	}
	return left
}
