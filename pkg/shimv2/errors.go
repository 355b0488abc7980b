package shimv2

import (
	"github.com/containerd/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxErrorLen bounds an error message handed to containerd: agent errors
// carry text the guest chose, up to a whole ttrpc message, and containerd
// logs them and passes them on to kubelet.
const maxErrorLen = 4 << 10

// errToGRPC keeps the status code an agent error already carries (ttrpc
// transports them) and maps the rest through containerd's errdefs. An
// agent answer the sandbox refused (errdefs.ErrInternal) becomes
// codes.Internal, which containerd 1.7's ToGRPC leaves unmapped.
func errToGRPC(err error) error {
	if err == nil {
		return nil
	}
	g := errdefs.ToGRPC(err)
	st, ok := status.FromError(g)
	if !ok {
		if !errdefs.IsInternal(err) {
			return g
		}
		st = status.New(codes.Internal, err.Error())
	}
	if msg := st.Message(); len(msg) > maxErrorLen {
		return status.Error(st.Code(), msg[:maxErrorLen]+"... (truncated)")
	}
	return st.Err()
}

// classed is errToGRPC for requests whose unclassed failures are reported
// as fallback (Create and Start say FailedPrecondition); a class the error
// has (the agent's status, a missed deadline, a refused answer) is kept,
// so containerd can tell a timeout from a refusal.
func classed(err error, fallback error) error {
	if g := errToGRPC(err); isStatus(g) {
		return g
	}
	return errToGRPC(errdefs.ToGRPCf(fallback, "%v", err))
}

func isStatus(err error) bool {
	_, ok := status.FromError(err)
	return ok
}
