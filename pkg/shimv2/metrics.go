package shimv2

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/containerd/namespaces"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kata-go/kata-go/pkg/metrics"
	"github.com/kata-go/kata-go/pkg/sandbox"
)

// CRI annotations that name a pod.
const (
	annSandboxName      = "io.kubernetes.cri.sandbox-name"
	annSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
)

// startMetrics records sb's boot phases and serves the pod's metrics on a
// socket in its state directory, for `containerd-shim-kata-v2 monitor`.
// A failure costs the metrics only, never the pod.
func (s *service) startMetrics(ctx context.Context, sb *sandbox.Sandbox, spec *specs.Spec) {
	observeBoot(sb.Phases, time.Now())
	ns, _ := namespaces.Namespace(ctx)
	labels := prometheus.Labels{
		metrics.LabelSandboxID: sb.ID, metrics.LabelNamespace: ns,
		metrics.LabelPodName: spec.Annotations[annSandboxName], metrics.LabelPodNamespace: spec.Annotations[annSandboxNamespace],
	}
	reg := metrics.NewRegistry(labels, metrics.NewPodCollector(podSource(sb)))
	srv, err := metrics.Serve(filepath.Join(sb.StateDir(), metrics.SocketName), reg)
	if err != nil {
		s.log.Warn("pod metrics not served", "err", err)
		return
	}
	s.mu.Lock()
	s.metrics = srv
	s.mu.Unlock()
}

// stopMetrics stops serving before the state directory goes.
func (s *service) stopMetrics() {
	s.mu.Lock()
	srv := s.metrics
	s.metrics = nil
	s.mu.Unlock()
	if srv != nil {
		_ = srv.Close()
	}
}

// observeBoot records the phases of a sandbox start that ended at ready.
func observeBoot(p sandbox.Phases, ready time.Time) {
	if p.Begin.IsZero() || p.VMMSpawned.IsZero() || p.AgentReady.IsZero() {
		return
	}
	metrics.BootPhase.WithLabelValues("vmm_spawn").Observe(p.VMMSpawned.Sub(p.Begin).Seconds())
	metrics.BootPhase.WithLabelValues("agent_connect").Observe(p.AgentReady.Sub(p.VMMSpawned).Seconds())
	if p.GuestAgentUptime > 0 {
		metrics.BootPhase.WithLabelValues("guest_boot").Observe(p.GuestAgentUptime.Seconds())
	}
	metrics.BootPhase.WithLabelValues("sandbox_start").Observe(ready.Sub(p.Begin).Seconds())
}

// podSource is what a scrape reads of sb: the first VM pid is QEMU, the
// others its helper daemons (virtiofsd).
func podSource(sb *sandbox.Sandbox) metrics.PodSource {
	return metrics.PodSource{
		Processes: func() []metrics.Process {
			ps := []metrics.Process{{Component: "shim", Pid: os.Getpid()}}
			for i, pid := range sb.VMPids() {
				c := "virtiofsd"
				if i == 0 {
					c = "qemu"
				}
				ps = append(ps, metrics.Process{Component: c, Pid: pid})
			}
			return ps
		},
		Guest: func(ctx context.Context) (metrics.GuestStats, error) {
			g, err := sb.GuestMetrics(ctx)
			if err != nil {
				return metrics.GuestStats{}, err
			}
			return metrics.GuestStats{MemTotal: g.MemTotalBytes, MemFree: g.MemFreeBytes, MemAvailable: g.MemAvailableBytes, OOMKills: g.OomKills}, nil
		},
		Accelerator: sb.Accelerator,
	}
}
