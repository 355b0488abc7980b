package shimv2

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/sandbox"
)

// startOperator serves the pod's operator endpoints in its state
// directory: Prometheus metrics and the debug shell socket.
func (s *service) startOperator(ctx context.Context, sb *sandbox.Sandbox, spec *specs.Spec) {
	s.startMetrics(ctx, sb, spec)
	d := s.startDebug(sb)
	s.mu.Lock()
	s.debug = d
	s.mu.Unlock()
}

// stopOperator ends them before the state directory goes.
func (s *service) stopOperator() {
	s.stopMetrics()
	s.mu.Lock()
	d := s.debug
	s.debug = nil
	s.mu.Unlock()
	if d != nil {
		d.close()
	}
}
