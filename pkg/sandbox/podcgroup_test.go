package sandbox

import (
	"log/slog"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hostcgroup"
)

// fakeGroup records the limits set on it.
type fakeGroup struct{ limits []int64 }

var _ hostcgroup.Group = (*fakeGroup)(nil)

func (f *fakeGroup) Add(int) error                { return nil }
func (f *fakeGroup) SetMemoryLimit(b int64) error { f.limits = append(f.limits, b); return nil }
func (f *fakeGroup) MemoryLimit() (int64, error)  { return 0, nil }
func (f *fakeGroup) Pids() ([]int, error)         { return nil, nil }
func (f *fakeGroup) Delete() error                { return nil }
func (f *fakeGroup) String() string               { return "fake" }

// TestPodCgroupGrowsWithThePod: an update of the pod's resources past the
// host limit raises it to base + new memory + overhead; a smaller one
// never lowers it below what the running VM needs.
func TestPodCgroupGrowsWithThePod(t *testing.T) {
	cfg := config.Default()
	g := &fakeGroup{}
	start := int64(hostLimitMiB(cfg.Hypervisor, 512+1024)) << 20
	s := &Sandbox{cfg: cfg, size: Size{MemoryMiB: 1536, BaseMemoryMiB: 512}, log: slog.New(slog.DiscardHandler),
		cgroup: &podCgroup{g: g, path: "/pod", limit: start}}
	mem := func(mib int64) *specs.LinuxResources {
		b := mib << 20
		return &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &b}}
	}
	if err := s.GrowPodCgroup(mem(512)); err != nil || len(g.limits) != 0 {
		t.Fatalf("a smaller pod changed the limit: %v %v", g.limits, err)
	}
	if err := s.GrowPodCgroup(mem(2048)); err != nil {
		t.Fatal(err)
	}
	want := int64(hostLimitMiB(cfg.Hypervisor, 512+2048)) << 20
	if len(g.limits) != 1 || g.limits[0] != want || want <= start {
		t.Fatalf("limits set %v; want one of %d (> %d)", g.limits, want, start)
	}
	if err := s.GrowPodCgroup(&specs.LinuxResources{}); err != nil || len(g.limits) != 1 {
		t.Fatalf("an update without memory changed the limit: %v %v", g.limits, err)
	}
	if err := (&Sandbox{}).GrowPodCgroup(mem(4096)); err != nil {
		t.Fatalf("a pod without a host cgroup: %v", err)
	}
}

func TestHostLimitCoversTheTCGCache(t *testing.T) {
	h := config.Default().Hypervisor
	h.Accelerator = "kvm"
	if got := hostLimitMiB(h, 1536); got != 1536+HostOverheadMiB {
		t.Fatalf("KVM: %d", got)
	}
	h.Accelerator, h.TCGTBSizeMiB = "tcg", 64
	if got := hostLimitMiB(h, 1536); got != 1536+HostOverheadMiB+64 {
		t.Fatalf("TCG with tb-size 64: %d", got)
	}
	h.TCGTBSizeMiB = 0
	if got := hostLimitMiB(h, 1536); got != 1536+HostOverheadMiB+qemuDefaultTBMiB {
		t.Fatalf("TCG with QEMU's default cache: %d", got)
	}
}
