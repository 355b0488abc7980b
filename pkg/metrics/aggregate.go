package metrics

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// maxScrape bounds one shim's answer: a shim is trusted, but a monitor
// must not be the thing that falls over when one misbehaves.
const maxScrape = 16 << 20

// Scrape fetches and parses the metrics a shim serves on socket.
func Scrape(ctx context.Context, socket string) (map[string]*dto.MetricFamily, error) {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://shim/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", socket, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", socket, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxScrape))
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", socket, err)
	}
	return mfs, nil
}

// Merge adds src's series to dst. Every shim labels its series with its
// sandbox, so series of different pods never collide; a family whose type
// differs from dst's is an error (a shim of another version).
func Merge(dst, src map[string]*dto.MetricFamily) error {
	for name, mf := range src {
		have, ok := dst[name]
		if !ok {
			dst[name] = proto.Clone(mf).(*dto.MetricFamily)
			continue
		}
		if have.GetType() != mf.GetType() {
			return fmt.Errorf("metric %s: type %s here, %s before", name, mf.GetType(), have.GetType())
		}
		have.Metric = append(have.Metric, mf.Metric...)
	}
	return nil
}

// Monitor serves every running pod's metrics in one scrape.
type Monitor struct {
	// StateRoot holds one directory per pod, each with its SocketName.
	StateRoot string
	// Timeout bounds each shim's scrape.
	Timeout time.Duration
}

var _ http.Handler = Monitor{}

var (
	descPods         = Namespace + "_monitor_pods"
	descScrapeErrors = Namespace + "_monitor_scrape_errors"
)

// Gather scrapes every pod's shim at once and merges their series. Pods
// whose shim does not answer (one that is ending) are counted, not fatal.
func (m Monitor) Gather(ctx context.Context) (map[string]*dto.MetricFamily, int, int) {
	sockets, _ := filepath.Glob(filepath.Join(m.StateRoot, "*", SocketName))
	type result struct {
		mfs map[string]*dto.MetricFamily
		err error
	}
	results := make([]result, len(sockets))
	var wg sync.WaitGroup
	for i, s := range sockets {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, m.Timeout)
			defer cancel()
			results[i].mfs, results[i].err = Scrape(ctx, s)
		})
	}
	wg.Wait()
	all := map[string]*dto.MetricFamily{}
	var pods, failed int
	for _, r := range results {
		if r.err == nil {
			r.err = Merge(all, r.mfs)
		}
		if r.err != nil {
			failed++
			continue
		}
		pods++
	}
	return all, pods, failed
}

func gauge(name, help string, v float64) *dto.MetricFamily {
	return &dto.MetricFamily{
		Name: proto.String(name), Help: proto.String(help), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(v)}}},
	}
}

func (m Monitor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	all, pods, failed := m.Gather(r.Context())
	all[descPods] = gauge(descPods, "Pods whose shim answered this scrape.", float64(pods))
	all[descScrapeErrors] = gauge(descScrapeErrors, "Pods whose shim did not answer this scrape (ending, or stuck).", float64(failed))
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	w.Header().Set("Content-Type", string(format))
	enc := expfmt.NewEncoder(w, format)
	for _, n := range names {
		if err := enc.Encode(all[n]); err != nil {
			return // the client went away
		}
	}
}
