package agentclient

import (
	"context"
	"path"
	"time"

	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/metrics"
)

// observeRPC records every agent call's latency by method and status
// code (metrics.AgentRPC).
func observeRPC(ctx context.Context, req *ttrpc.Request, resp *ttrpc.Response, info *ttrpc.UnaryClientInfo, invoke ttrpc.Invoker) error {
	begin := time.Now()
	err := invoke(ctx, req, resp)
	metrics.AgentRPC.WithLabelValues(path.Base(info.FullMethod), status.Code(err).String()).Observe(time.Since(begin).Seconds())
	return err
}
