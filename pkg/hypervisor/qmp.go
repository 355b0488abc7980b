package hypervisor

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
)

// qmp is a minimal QEMU Machine Protocol client: one command at a time,
// asynchronous events skipped. It is small enough that a dependency would
// cost more than it saves, and it will need SCM_RIGHTS for fd passing
// (getfd), which the common Go QMP libraries do not expose.
type qmp struct {
	// mu serialises commands; it guards conn and r.
	mu   sync.Mutex
	conn net.Conn
	r    *bufio.Reader
}

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	QMP   json.RawMessage `json:"QMP"`
}

func dialQMP(ctx context.Context, path string) (*qmp, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("dial QMP %s: %w", path, err)
	}
	q := &qmp{conn: conn, r: bufio.NewReader(conn)}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	var greeting qmpReply
	if err := q.readReply(&greeting); err != nil || greeting.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %v", err)
	}
	if _, err := q.execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) readReply(v *qmpReply) error {
	line, err := q.r.ReadBytes('\n')
	if err != nil {
		return err
	}
	return json.Unmarshal(line, v)
}

// execute runs one QMP command and returns its "return" value.
func (q *qmp) execute(ctx context.Context, cmd string, args map[string]any) (json.RawMessage, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetDeadline(dl)
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	var ret json.RawMessage
	if err := q.awaitReply(cmd, &ret); err != nil {
		return nil, err
	}
	return ret, nil
}

// awaitReply reads up to the command's answer, skipping events; q.mu is held.
func (q *qmp) awaitReply(cmd string, ret *json.RawMessage) error {
	for {
		var rep qmpReply
		if err := q.readReply(&rep); err != nil {
			return fmt.Errorf("QMP %s: %w", cmd, err)
		}
		if rep.Event != "" {
			continue
		}
		if rep.Error != nil {
			return fmt.Errorf("QMP %s: %s: %s", cmd, rep.Error.Class, rep.Error.Desc)
		}
		if ret != nil {
			*ret = rep.Return
		}
		return nil
	}
}

func (q *qmp) close() error { return q.conn.Close() }
