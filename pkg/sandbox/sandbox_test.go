package sandbox_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.uber.org/goleak"

	"github.com/kata-go/kata-go/internal/agent"
	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hypervisor"
	"github.com/kata-go/kata-go/pkg/sandbox"
	"github.com/kata-go/kata-go/pkg/sandbox/sandboxtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func spec(args ...string) *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{Args: args, Cwd: "/"},
		Root:    &specs.Root{Path: "rootfs"},
		Linux:   podNet(),
	}
}

// podNet is a linux section with its own network namespace, as every
// spec kata-go accepts has.
func podNet() *specs.Linux {
	return &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.NetworkNamespace}}}
}

func start(t *testing.T, s *specs.Spec, deps sandbox.Deps) (*sandbox.Sandbox, string, error) {
	t.Helper()
	dir := sandbox.StateDir(t.TempDir(), "/run/containerd/io.containerd.runtime.v2.task/k8s.io/"+strings.Repeat("f", 64))
	sb, err := sandbox.Start(context.Background(), sandbox.Options{ID: "sb", StateDir: dir, Config: config.Default(), Spec: s, Deps: deps})
	if err == nil {
		t.Cleanup(func() { _ = sb.Stop(context.Background()) })
	}
	return sb, dir, err
}

func TestStateDirFitsSocketPaths(t *testing.T) {
	long := "/run/containerd/io.containerd.runtime.v2.task/k8s.io/" + strings.Repeat("a", 64)
	d := sandbox.StateDir("/run/kata-go", long)
	if len(filepath.Join(d, "virtiofsd-0.sock")) > 100 {
		t.Fatalf("state dir %s is too long for unix sockets", d)
	}
	if d != sandbox.StateDir("/run/kata-go", long+"/") || d == sandbox.StateDir("/run/kata-go", long+"b") {
		t.Fatal("state dir is not a stable function of the bundle path")
	}
}

func TestVMSizeFollowsLimits(t *testing.T) {
	deps, env := sandboxtest.Deps(t, agent.Options{})
	s := spec("true")
	quota, period, mem := int64(150000), uint64(100000), int64(256<<20)
	s.Linux.Resources = &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: &quota, Period: &period}, Memory: &specs.LinuxMemory{Limit: &mem}}
	if _, _, err := start(t, s, deps); err != nil {
		t.Fatal(err)
	}
	if env.VM.Cfg.VCPUs != 1+2 || env.VM.Cfg.MemoryMiB != 512+256 {
		t.Fatalf("VM got %d vCPUs and %d MiB; want 3 and 768", env.VM.Cfg.VCPUs, env.VM.Cfg.MemoryMiB)
	}
}

func TestHugeMemoryIsRefused(t *testing.T) {
	deps, env := sandboxtest.Deps(t, agent.Options{})
	s := spec("true")
	mem := int64(1 << 50)
	s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem}}
	_, _, err := start(t, s, deps)
	if err == nil || !strings.Contains(err.Error(), "more than the host has") {
		t.Fatalf("start: %v", err)
	}
	if env.VM != nil {
		t.Fatal("a VM was created")
	}
}

func TestAnnotationCannotSwapTheKernel(t *testing.T) {
	deps, _ := sandboxtest.Deps(t, agent.Options{})
	s := spec("true")
	s.Annotations = map[string]string{config.AnnotationPrefix + "hypervisor.kernel": "/tmp/evil"}
	if _, _, err := start(t, s, deps); err == nil || !strings.Contains(err.Error(), "not allowed") {
		t.Fatalf("start: %v", err)
	}
}

func TestFailedStartLeavesNothing(t *testing.T) {
	deps, _ := sandboxtest.Deps(t, agent.Options{})
	inner := deps.NewHypervisor
	deps.NewHypervisor = func(c hypervisor.Config) (hypervisor.Hypervisor, error) {
		h, err := inner(c)
		h.(*sandboxtest.Hypervisor).StartErr = errors.New("no qemu here")
		return h, err
	}
	_, dir, err := start(t, spec("true"), deps)
	if err == nil || !strings.Contains(err.Error(), "no qemu here") {
		t.Fatalf("start: %v", err)
	}
	if _, serr := os.Stat(dir); !os.IsNotExist(serr) {
		t.Fatalf("state dir %s left after a failed start", dir)
	}
}

func TestVolumesShareOnlyTheirPaths(t *testing.T) {
	deps, env := sandboxtest.Deps(t, agent.Options{})
	sb, _, err := start(t, spec("true"), deps)
	if err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	vol := filepath.Join(host, "data")
	if err := os.Mkdir(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(host, "link")
	if err := os.Symlink("/", link); err != nil {
		t.Fatal(err)
	}
	bundle := t.TempDir()
	s := spec("true")
	s.Mounts = []specs.Mount{{Destination: "/evil", Type: "bind", Source: link, Options: []string{"rbind"}}}
	if _, err := sb.CreateContainer(context.Background(), sandbox.ContainerOptions{ID: "c1", Bundle: bundle, Spec: s}); err == nil || !strings.Contains(err.Error(), "symlink") {
		t.Fatalf("a symlinked volume source was accepted: %v", err)
	}
	s.Mounts = []specs.Mount{{Destination: "/data", Type: "bind", Source: vol, Options: []string{"rbind", "ro"}}}
	if _, err := sb.CreateContainer(context.Background(), sandbox.ContainerOptions{ID: "c2", Bundle: bundle, Spec: s}); err != nil {
		t.Fatal(err)
	}
	var sawVol bool
	for _, m := range env.FS.Mounts() {
		if strings.HasPrefix(m, link) {
			t.Fatalf("symlink source was mounted: %s", m)
		}
		sawVol = sawVol || strings.HasPrefix(m, vol+"->")
	}
	if !sawVol {
		t.Fatalf("volume not shared: %v", env.FS.Mounts())
	}
}

// An emptyDir of medium Memory and the pod's /dev/shm become one guest tmpfs
// per source, shared by the pod's containers; other volumes are bound.
func TestEphemeralVolumesLiveInTheGuest(t *testing.T) {
	deps, env := sandboxtest.Deps(t, agent.Options{})
	sb, _, err := start(t, spec("true"), deps)
	if err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	emptyDir := filepath.Join(host, "pods/u/volumes/kubernetes.io~empty-dir/tmpfs-cache")
	shm := filepath.Join(host, "sandboxes/x/tmpfs/shm")
	secret := filepath.Join(host, "tmpfs-secret")
	for _, d := range []string{emptyDir, shm, secret} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := spec("true")
	s.Mounts = []specs.Mount{
		{Destination: "/cache", Type: "bind", Source: emptyDir, Options: []string{"rbind"}},
		{Destination: "/dev/shm", Type: "bind", Source: shm, Options: []string{"rbind"}},
		{Destination: "/secret", Type: "bind", Source: secret, Options: []string{"rbind", "ro"}},
	}
	for _, id := range []string{"c1", "c2"} {
		if _, err := sb.CreateContainer(context.Background(), sandbox.ContainerOptions{ID: id, Bundle: t.TempDir(), Spec: s}); err != nil {
			t.Fatal(err)
		}
	}
	st1, st2 := env.Agent.Storages("c1"), env.Agent.Storages("c2")
	if len(st1) != 2 || st1[0].Driver != "tmpfs" || st1[0].MountPoint != st2[0].MountPoint || st1[0].MountPoint == st1[1].MountPoint {
		t.Fatalf("storages %v / %v: want two guest tmpfs, the same for both containers", st1, st2)
	}
	got := map[string]string{}
	for _, m := range env.Agent.Spec("c1").Mounts {
		got[m.Destination] = m.Source
	}
	if got["/cache"] != st1[0].MountPoint || got["/dev/shm"] != st1[1].MountPoint || !strings.HasPrefix(got["/secret"], "/run/kata-go/shared/c1/mounts/") {
		t.Fatalf("guest mount sources %v", got)
	}
	for _, m := range env.FS.Mounts() {
		if strings.HasPrefix(m, emptyDir) || strings.HasPrefix(m, shm) {
			t.Fatalf("an ephemeral volume was bound on the host: %s", m)
		}
	}
}

func TestBadContainerIDs(t *testing.T) {
	deps, _ := sandboxtest.Deps(t, agent.Options{})
	sb, _, err := start(t, spec("true"), deps)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"", "../x", "a/b", strings.Repeat("x", 200)} {
		if _, err := sb.CreateContainer(context.Background(), sandbox.ContainerOptions{ID: id, Bundle: t.TempDir(), Spec: spec("true")}); err == nil {
			t.Errorf("id %q accepted", id)
		}
	}
}

func TestSpecErrorsNameTheField(t *testing.T) {
	cases := []struct {
		s    *specs.Spec
		want string
	}{
		{nil, "missing"},
		{&specs.Spec{Process: &specs.Process{Cwd: "/"}, Linux: &specs.Linux{}}, "process.args"},
		{&specs.Spec{Process: &specs.Process{Args: []string{"x"}, Cwd: "tmp"}, Linux: &specs.Linux{}}, "process.cwd"},
		{&specs.Spec{Process: &specs.Process{Args: []string{"x"}, Cwd: "/"}}, "linux"},
		{&specs.Spec{Process: &specs.Process{Args: []string{"x"}, Cwd: "/"}, Linux: &specs.Linux{}}, "host networking"},
		{&specs.Spec{Process: &specs.Process{Args: []string{"x"}, Cwd: "/"}, Linux: podNet(), Mounts: []specs.Mount{{Destination: "rel"}}}, "mount destination"},
	}
	for _, c := range cases {
		if err := sandbox.CheckSpec(c.s); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckSpec: %v, want an error naming %q", err, c.want)
		}
	}
}

// A plain "ro" volume is read-only at its top only (runc's non-recursive
// semantics): with mounts below the source, the guest bind stays
// read-write and the host bind, read-only at its top, enforces it. "rro"
// is read-only all the way down on both sides.
func TestReadOnlyVolumeIsNotRecursive(t *testing.T) {
	deps, env := sandboxtest.Deps(t, agent.Options{})
	sb, _, err := start(t, spec("true"), deps)
	if err != nil {
		t.Fatal(err)
	}
	host := t.TempDir()
	plain, nested, rro := filepath.Join(host, "plain"), filepath.Join(host, "with-submounts"), filepath.Join(host, "rro-submounts")
	for _, d := range []string{plain, nested, rro} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := spec("true")
	s.Mounts = []specs.Mount{
		{Destination: "/plain", Type: "bind", Source: plain, Options: []string{"rbind", "ro"}},
		{Destination: "/nested", Type: "bind", Source: nested, Options: []string{"rbind", "ro"}},
		{Destination: "/rro", Type: "bind", Source: rro, Options: []string{"rbind", "rro"}},
	}
	if _, err := sb.CreateContainer(context.Background(), sandbox.ContainerOptions{ID: "c1", Bundle: t.TempDir(), Spec: s}); err != nil {
		t.Fatal(err)
	}
	opts := map[string][]string{}
	for _, m := range env.Agent.Spec("c1").Mounts {
		opts[m.Destination] = m.Options
	}
	if !slices.Contains(opts["/plain"], "ro") {
		t.Errorf("/plain options %v: a volume with nothing below stays read-only in the guest", opts["/plain"])
	}
	if slices.Contains(opts["/nested"], "ro") {
		t.Errorf("/nested options %v: a guest ro bind would make its submounts read-only too", opts["/nested"])
	}
	if !slices.Contains(env.FS.ReadOnly(), nested) {
		t.Errorf("host binds read-only: %v, want %s among them", env.FS.ReadOnly(), nested)
	}
	// "rro" is recursive on both sides: the host bind and the guest's.
	if !slices.Contains(opts["/rro"], "rro") || !slices.Contains(env.FS.ReadOnly(), rro+" (recursive)") {
		t.Errorf("/rro: guest options %v, host read-only binds %v: want rro on both", opts["/rro"], env.FS.ReadOnly())
	}
}
