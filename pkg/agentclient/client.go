package agentclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

// Client is one long-lived ttrpc connection to the agent.
type Client struct {
	agentapi.AgentService
	conn   net.Conn
	tc     *ttrpc.Client
	closed chan struct{}
	check  *agentapi.CheckResponse
}

// CheckResponse is the agent's answer to the first Check (version, uptime).
func (c *Client) CheckResponse() *agentapi.CheckResponse { return c.check }

// Dial connects to the agent and returns once it answers Check. It retries
// in a tight loop until ctx ends; each failed attempt yields for a
// millisecond only so a refused vsock connect does not spin a core.
func Dial(ctx context.Context, a Address) (*Client, error) {
	dial, err := dialerFor(a.Transport)
	if err != nil {
		return nil, err
	}
	if len(a.Secret) != channel.SecretLen {
		return nil, fmt.Errorf("agent at %s: no valid channel secret (%d bytes, want %d)", a, len(a.Secret), channel.SecretLen)
	}
	var last error
	for attempt := 1; ; attempt++ {
		c, err := connect(ctx, dial, a)
		if err == nil {
			return c, nil
		}
		if errors.Is(err, channel.ErrAuth) {
			// Retrying cannot change the answer.
			return nil, fmt.Errorf("agent at %s: %w", a, err)
		}
		// An attempt cut short by the deadline says less than the one before it.
		if last == nil || (ctx.Err() == nil && !errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded)) {
			last = err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("agent at %s did not answer (%d attempts): %w", a, attempt, last)
		case <-time.After(time.Millisecond):
		}
	}
}

func connect(ctx context.Context, dial dialer, a Address) (*Client, error) {
	conn, err := dial(ctx, a)
	if err != nil {
		return nil, err
	}
	if err := authenticate(ctx, conn, a.Secret); err != nil {
		conn.Close()
		return nil, err
	}
	closed := make(chan struct{})
	tc := ttrpc.NewClient(conn, ttrpc.WithOnClose(func() { close(closed) }), ttrpc.WithUnaryClientInterceptor(observeRPC))
	c := &Client{AgentService: agentapi.NewAgentClient(tc), conn: conn, tc: tc, closed: closed}
	resp, err := c.AgentService.Check(ctx, &agentapi.CheckRequest{})
	if err != nil {
		tc.Close()
		return nil, fmt.Errorf("check: %w", err)
	}
	c.check = resp
	return c, nil
}

// Closed is closed when the connection to the agent is gone.
func (c *Client) Closed() <-chan struct{} { return c.closed }

// Close ends the connection; calls in flight fail.
func (c *Client) Close() error { return c.tc.Close() }
