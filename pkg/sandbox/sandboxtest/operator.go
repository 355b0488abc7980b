package sandboxtest

import (
	"context"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// The fake agent has no guest: its memory figures are fixed and it never
// serves a debug shell.

func (a *Agent) GetGuestMetrics(context.Context, *agentapi.Empty) (*agentapi.GuestMetrics, error) {
	return &agentapi.GuestMetrics{MemTotalBytes: 512 << 20, MemFreeBytes: 256 << 20, MemAvailableBytes: 384 << 20}, nil
}

func noShell() error { return status.Error(codes.PermissionDenied, "fake agent: no debug shell") }

func (a *Agent) StartDebugShell(context.Context, *agentapi.StartDebugShellRequest) (*agentapi.DebugShellResponse, error) {
	return nil, noShell()
}
func (a *Agent) DebugShellWrite(context.Context, *agentapi.DebugShellWriteRequest) (*agentapi.Empty, error) {
	return nil, noShell()
}
func (a *Agent) DebugShellRead(context.Context, *agentapi.DebugShellReadRequest) (*agentapi.DebugShellReadResponse, error) {
	return nil, noShell()
}
func (a *Agent) DebugShellResize(context.Context, *agentapi.DebugShellResizeRequest) (*agentapi.Empty, error) {
	return nil, noShell()
}
func (a *Agent) DebugShellWait(context.Context, *agentapi.DebugShellRequest) (*agentapi.DebugShellWaitResponse, error) {
	return nil, noShell()
}
func (a *Agent) DebugShellKill(context.Context, *agentapi.DebugShellRequest) (*agentapi.Empty, error) {
	return nil, noShell()
}
