package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/metrics"
)

// runMonitor serves every running pod's metrics at ADDR/metrics until
// SIGINT or SIGTERM: each scrape asks each pod's shim over the metrics
// socket in its state directory.
func runMonitor(args []string) int {
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8090", "address to serve /metrics on")
	cfgPath := fs.String("config", "", "configuration file, for runtime.state_root (default: $"+config.EnvPath+", else "+config.DefaultPath+")")
	timeout := fs.Duration("timeout", 5*time.Second, "how long one pod's shim may take to answer")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "monitor:", err)
		return 1
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "monitor:", err)
		return 1
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics.Monitor{StateRoot: cfg.Runtime.StateRoot, Timeout: *timeout})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "monitor: serving the metrics of the pods under %s at http://%s/metrics\n", cfg.Runtime.StateRoot, l.Addr())
	if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "monitor:", err)
		return 1
	}
	return 0
}
