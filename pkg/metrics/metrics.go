// Package metrics holds kata-go's Prometheus metrics: the shim's own
// (boot phases, agent RPC latency, OOM kills), a pod's collected at scrape
// time (memory of its host processes, guest memory, accelerator, VM
// exits), the unix-socket endpoint each shim serves them on, and the
// aggregation `containerd-shim-kata-v2 monitor` serves for all pods.
// It imports nothing of kata-go, so any layer may record into it.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Namespace prefixes every kata-go metric name.
const Namespace = "kata_go"

// Labels every series of a pod carries, set by the shim that serves it.
const (
	LabelSandboxID    = "sandbox_id"
	LabelNamespace    = "namespace"     // containerd namespace
	LabelPodName      = "pod_name"      // CRI pods only
	LabelPodNamespace = "pod_namespace" // CRI pods only
)

// Process-wide collectors: one shim process serves one pod, so these are
// that pod's.
var (
	// BootPhase observes how long each phase of a VM start took.
	BootPhase = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "boot_phase_seconds",
		Help:    "Duration of each phase of a pod VM start: vmm_spawn (config to QEMU running), agent_connect (QEMU running to agent answering), guest_boot (guest kernel start to agent serving, guest clock), sandbox_start (all of it, to the pod ready for containers).",
		Buckets: prometheus.ExponentialBuckets(0.01, 2, 14), // 10ms .. 82s (TCG boots take seconds)
	}, []string{"phase"})
	// AgentRPC observes each call to the guest agent, by method and
	// outcome. Long polls (WaitProcess, ReadStdout, GetOOMEvent) last as
	// long as their wait.
	AgentRPC = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: Namespace, Name: "agent_rpc_duration_seconds",
		Help:    "Latency of ttrpc calls from the shim to the guest agent, by method and status code.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10), // 0.5ms .. 131s
	}, []string{"method", "code"})
	// OOMKills counts the OOM kills of this pod's containers the shim
	// reported to containerd.
	OOMKills = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: Namespace, Name: "oom_kills_total",
		Help: "OOM kills of the pod's containers reported to containerd (TaskOOM events).",
	})
)

// NewRegistry returns a registry of the process-wide collectors and extra,
// every series labelled with labels.
func NewRegistry(labels prometheus.Labels, extra ...prometheus.Collector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	r := prometheus.WrapRegistererWith(labels, reg)
	r.MustRegister(BootPhase, AgentRPC, OOMKills)
	r.MustRegister(extra...)
	return reg
}
