package hypervisor

import (
	"context"
	"fmt"
	"net"
	"os"
	"syscall"
)

// sendFD hands f to QEMU under name with QMP's getfd: the fd travels as
// SCM_RIGHTS on the command's own message, so QEMU never opens a path the
// guest could have influenced, and its seccomp filter (spawn=deny) rules
// out the exec: migration URIs anyway.
func (q *qmp) sendFD(ctx context.Context, name string, f *os.File) error {
	uc, ok := q.conn.(*net.UnixConn)
	if !ok {
		return fmt.Errorf("QMP getfd: connection is %T, not a unix socket", q.conn)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetDeadline(dl)
	}
	msg := fmt.Appendf(nil, `{"execute":"getfd","arguments":{"fdname":%q}}`+"\n", name)
	if _, _, err := uc.WriteMsgUnix(msg, syscall.UnixRights(int(f.Fd())), nil); err != nil {
		return fmt.Errorf("QMP getfd: %w", err)
	}
	return q.awaitReply("getfd", nil)
}
