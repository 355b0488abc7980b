package agent

import (
	"bufio"
	"context"
	"os"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// GetGuestMetrics reports the guest's memory and OOM kills, for the
// host's Prometheus metrics.
func (s *service) GetGuestMetrics(context.Context, *agentapi.Empty) (*agentapi.GuestMetrics, error) {
	mem, err := readKeyed("/proc/meminfo")
	if err != nil {
		return nil, status.Errorf(codes.Internal, "meminfo: %v", err)
	}
	vm, err := readKeyed("/proc/vmstat")
	if err != nil {
		return nil, status.Errorf(codes.Internal, "vmstat: %v", err)
	}
	return &agentapi.GuestMetrics{
		MemTotalBytes: mem["MemTotal"] * 1024, MemFreeBytes: mem["MemFree"] * 1024,
		MemAvailableBytes: mem["MemAvailable"] * 1024, OomKills: vm["oom_kill"],
	}, nil
}

// readKeyed reads "key value" or "Key: value kB" lines into a map.
func readKeyed(path string) (map[string]uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 2 {
			continue
		}
		if v, err := strconv.ParseUint(fields[1], 10, 64); err == nil {
			out[strings.TrimSuffix(fields[0], ":")] = v
		}
	}
	return out, sc.Err()
}
