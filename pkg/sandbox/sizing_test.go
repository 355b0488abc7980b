package sandbox_test

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/internal/agent"
	"github.com/kata-go/kata-go/pkg/sandbox"
	"github.com/kata-go/kata-go/pkg/sandbox/sandboxtest"
)

// podSpec is a CRI sandbox container: no limits of its own, the pod's
// resources in containerd's annotations.
func podSpec(memBytes, quota, period string) *specs.Spec {
	s := spec("pause")
	s.Annotations = map[string]string{
		sandbox.AnnSandboxMemory: memBytes, sandbox.AnnSandboxCPUQuota: quota,
		sandbox.AnnSandboxCPUPeriod: period, sandbox.AnnSandboxCPUShares: "2048",
	}
	return s
}

func TestVMSizeFromPodAnnotations(t *testing.T) {
	for _, tc := range []struct {
		name              string
		mem, quota, per   string
		wantCPU, wantMiB  int
		wantRule          string
		containerLimitMiB int64 // ignored when the annotations are there
	}{
		{"1GiB 2CPU", "1073741824", "200000", "100000", 1 + 2, 512 + 1024, sandbox.RulePod, 0},
		{"quota rounds up", "1", "150001", "100000", 1 + 2, 512 + 1, sandbox.RulePod, 0},
		{"no limits", "0", "0", "0", 1, 512, sandbox.RulePod, 0},
		{"unlimited quota", "0", "-1", "100000", 1, 512, sandbox.RulePod, 0},
		{"container limits ignored", "268435456", "0", "100000", 1, 512 + 256, sandbox.RulePod, 4096},
	} {
		t.Run(tc.name, func(t *testing.T) {
			deps, env := sandboxtest.Deps(t, agent.Options{})
			s := podSpec(tc.mem, tc.quota, tc.per)
			if tc.containerLimitMiB > 0 {
				l := tc.containerLimitMiB << 20
				s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &l}}
			}
			sb, _, err := start(t, s, deps)
			if err != nil {
				t.Fatal(err)
			}
			if env.VM.Cfg.VCPUs != tc.wantCPU || env.VM.Cfg.MemoryMiB != tc.wantMiB {
				t.Fatalf("VM got %d vCPUs and %d MiB; want %d and %d", env.VM.Cfg.VCPUs, env.VM.Cfg.MemoryMiB, tc.wantCPU, tc.wantMiB)
			}
			if got := sb.Size(); got.Rule != tc.wantRule || !strings.Contains(got.Why, sandbox.AnnSandboxMemory) {
				t.Fatalf("size %+v: want rule %q and a reason naming the annotation", got, tc.wantRule)
			}
		})
	}
}

func TestVMSizeFallbackSaysWhy(t *testing.T) {
	deps, _ := sandboxtest.Deps(t, agent.Options{})
	sb, _, err := start(t, spec("true"), deps)
	if err != nil {
		t.Fatal(err)
	}
	if got := sb.Size(); got.Rule != sandbox.RuleContainer || got.VCPUs != 1 || got.MemoryMiB != 512 || !strings.Contains(got.Why, "no "+sandbox.AnnSandboxMemory) {
		t.Fatalf("size %+v", got)
	}
}

func TestBadPodAnnotationIsNamed(t *testing.T) {
	deps, env := sandboxtest.Deps(t, agent.Options{})
	_, _, err := start(t, podSpec("1GiB", "0", "0"), deps)
	if err == nil || !strings.Contains(err.Error(), sandbox.AnnSandboxMemory) || !errdefs.IsInvalidArgument(err) {
		t.Fatalf("start: %v", err)
	}
	if env.VM != nil {
		t.Fatal("a VM was created")
	}
}

func TestContainerMustFitTheVM(t *testing.T) {
	deps, _ := sandboxtest.Deps(t, agent.Options{})
	sb, _, err := start(t, podSpec("1073741824", "0", "0"), deps) // 512 + 1024 MiB
	if err != nil {
		t.Fatal(err)
	}
	limit := func(mib int64) *specs.Spec {
		s := spec("app")
		l := mib << 20
		s.Linux.Resources = &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &l}}
		return s
	}
	if err := sb.CheckFits("fits", limit(900)); err != nil {
		t.Fatalf("900 MiB in a 1536 MiB VM: %v", err)
	}
	if err := sb.CheckFits("no-limit", spec("app")); err != nil {
		t.Fatalf("no limit: %v", err)
	}
	err = sb.CheckFits("big", limit(4096))
	if err == nil || !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("4096 MiB in a 1536 MiB VM: %v; want FailedPrecondition", err)
	}
	for _, want := range []string{"big", "4096 MiB", "1536 MiB"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error %q does not name %q", err, want)
		}
	}
	huge := int64(1 << 62)
	if err := sb.CheckResourcesFit("big", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &huge}}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("update to 4 EiB: %v", err)
	}
}
