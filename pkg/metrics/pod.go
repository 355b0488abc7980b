package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Process is one host process of a pod.
type Process struct {
	Component string // qemu, virtiofsd, shim
	Pid       int
}

// GuestStats are the agent's answer; the guest is not trusted, so they
// describe only what the guest claims about itself.
type GuestStats struct {
	MemTotal, MemFree, MemAvailable uint64 // bytes
	OOMKills                        uint64 // guest kernel OOM kills since boot
}

// PodSource is where a pod's scrape-time figures come from.
type PodSource struct {
	Processes   func() []Process
	Guest       func(context.Context) (GuestStats, error)
	Accelerator func() (name, reason string)
}

// guestTimeout bounds the agent call a scrape makes: a stuck guest leaves
// its guest series out instead of stalling the scrape.
const guestTimeout = 2 * time.Second

var (
	descRSS = prometheus.NewDesc(Namespace+"_memory_rss_bytes",
		"Resident set size of the pod's host processes (/proc/PID/smaps_rollup Rss).", []string{"component"}, nil)
	descPSS = prometheus.NewDesc(Namespace+"_memory_pss_bytes",
		"Proportional set size of the pod's host processes (/proc/PID/smaps_rollup Pss): shared pages divided among their users.", []string{"component"}, nil)
	descGuestMem = prometheus.NewDesc(Namespace+"_guest_memory_bytes",
		"Guest memory as the guest's agent reports it (/proc/meminfo), by kind: total, free, available.", []string{"kind"}, nil)
	descGuestOOM = prometheus.NewDesc(Namespace+"_guest_oom_kills_total",
		"OOM kills in the guest kernel since boot, as the agent reports them (vmstat oom_kill).", nil, nil)
	descAccel = prometheus.NewDesc(Namespace+"_accelerator_info",
		"The accelerator the pod's VM runs under (kvm or tcg) and why it was chosen; always 1.", []string{"accelerator", "reason"}, nil)
	descExits = prometheus.NewDesc(Namespace+"_vm_exits_total",
		"VM exits of the pod's VM by cause, from KVM's statistics (none under TCG).", []string{"cause"}, nil)
)

type podCollector struct{ src PodSource }

// NewPodCollector collects a pod's figures at each scrape.
func NewPodCollector(src PodSource) prometheus.Collector { return podCollector{src} }

func (podCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRSS, descPSS, descGuestMem, descGuestOOM, descAccel, descExits} {
		ch <- d
	}
}

func (c podCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.src.Processes() {
		m, err := ReadMemory(p.Pid)
		if err != nil {
			continue // it exited meanwhile
		}
		ch <- prometheus.MustNewConstMetric(descRSS, prometheus.GaugeValue, float64(m.RSS), p.Component)
		ch <- prometheus.MustNewConstMetric(descPSS, prometheus.GaugeValue, float64(m.PSS), p.Component)
		if p.Component == "qemu" {
			for cause, n := range ReadVMExits(p.Pid) {
				ch <- prometheus.MustNewConstMetric(descExits, prometheus.CounterValue, float64(n), cause)
			}
		}
	}
	if name, why := c.src.Accelerator(); name != "" {
		ch <- prometheus.MustNewConstMetric(descAccel, prometheus.GaugeValue, 1, name, why)
	}
	ctx, cancel := context.WithTimeout(context.Background(), guestTimeout)
	defer cancel()
	if g, err := c.src.Guest(ctx); err == nil {
		for kind, v := range map[string]uint64{"total": g.MemTotal, "free": g.MemFree, "available": g.MemAvailable} {
			ch <- prometheus.MustNewConstMetric(descGuestMem, prometheus.GaugeValue, float64(v), kind)
		}
		ch <- prometheus.MustNewConstMetric(descGuestOOM, prometheus.CounterValue, float64(g.OOMKills))
	}
}
