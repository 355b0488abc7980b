package shimv2

import (
	"fmt"

	"github.com/containerd/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxErrorLen bounds an error message handed to containerd: agent errors
// carry text the guest chose, up to a whole ttrpc message, and containerd
// logs them and passes them on to kubelet.
const maxErrorLen = 4 << 10

// errToGRPC is the one place an error becomes a Task API status: below
// it, errors are wrapped with %w and keep their errdefs class (or the
// status code an agent answer carries, which ttrpc transports). An agent
// answer the sandbox refused (errdefs.ErrInternal) becomes codes.Internal,
// which containerd 1.7's ToGRPC leaves unmapped; an error with no class
// (sandbox.ErrWrongState among them, as runc's shim answers those)
// becomes codes.Unknown.
func errToGRPC(err error) error {
	if err == nil {
		return nil
	}
	g := errdefs.ToGRPC(err)
	st, ok := status.FromError(g)
	if !ok {
		code := codes.Unknown
		if errdefs.IsInternal(err) {
			code = codes.Internal
		}
		st = status.New(code, err.Error())
	}
	if msg := st.Message(); len(msg) > maxErrorLen {
		return status.Error(st.Code(), msg[:maxErrorLen]+"... (truncated)")
	}
	return st.Err()
}

// classed is errToGRPC for a failure to bring the pod's VM up: a class
// the error has (a missed deadline, a refused answer, an agent's status)
// is kept; one without is FailedPrecondition, what the host lacks to run
// the pod (a kernel, KVM, a working config).
func classed(err error, fallback error) error {
	if hasClass(err) {
		return errToGRPC(err)
	}
	return errToGRPC(fmt.Errorf("%w: %w", err, fallback))
}

// hasClass says whether err carries an errdefs class or a status code.
func hasClass(err error) bool {
	if _, ok := status.FromError(err); ok {
		return true
	}
	for _, is := range []func(error) bool{
		errdefs.IsInvalidArgument, errdefs.IsNotFound, errdefs.IsAlreadyExists, errdefs.IsFailedPrecondition,
		errdefs.IsUnavailable, errdefs.IsNotImplemented, errdefs.IsCanceled, errdefs.IsDeadlineExceeded, errdefs.IsInternal,
	} {
		if is(err) {
			return true
		}
	}
	return false
}
