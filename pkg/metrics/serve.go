package metrics

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// SocketName is the metrics socket in each pod's state directory.
const SocketName = "metrics.sock"

// Server serves one registry over HTTP on a unix socket.
type Server struct {
	srv  *http.Server
	done chan struct{}
}

// Serve listens on path (created 0600: only root may scrape) and serves g
// at /metrics until Close.
func Serve(path string, g prometheus.Gatherer) (*Server, error) {
	_ = os.Remove(path) // a socket left by a crashed shim of the same pod
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("metrics socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("metrics socket: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError}))
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		// Serve fails only with the listener; the pod goes on unobserved.
		_ = s.srv.Serve(l)
	}()
	return s, nil
}

// Close stops serving and waits for the server to end.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}
