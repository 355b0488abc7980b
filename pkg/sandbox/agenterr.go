package sandbox

import (
	"context"
	"errors"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// maxAgentMsg bounds the part of an agent error's text the host keeps: the
// guest chooses it (up to a whole ttrpc message) and the host logs it and
// hands it to containerd, which passes it on to kubelet.
const maxAgentMsg = 512

// AgentError is a failure the agent reported: the class it claimed, as an
// errdefs error (errors.Is and errdefs.IsNotFound etc. see it through %w
// chains), and its message, bounded and printable. The class is the
// guest's word: a lying class only misleads the guest's own client.
type AgentError struct {
	Code codes.Code
	// Msg is the agent's message after sanitizeAgentText.
	Msg   string
	class error
}

func (e *AgentError) Error() string { return "agent: " + e.Msg }

// Unwrap is the errdefs class, so the class survives any %w wrapping.
func (e *AgentError) Unwrap() error { return e.class }

// GRPCStatus keeps the agent's code for code that turns errors back into
// gRPC statuses (status.FromError finds it through wrapping too).
func (e *AgentError) GRPCStatus() *status.Status { return status.New(e.Code, e.Error()) }

// agentError turns an error returned by an agent call into an *AgentError
// when it is the agent's answer (a gRPC status carried by ttrpc). Anything
// else (a local deadline, a closed connection, a refused answer) is
// returned unchanged: it is the host's own error and keeps its class.
func agentError(err error) error {
	if err == nil {
		return nil
	}
	var ae *AgentError
	if errors.As(err, &ae) {
		return err // converted already
	}
	var se interface{ GRPCStatus() *status.Status }
	if !errors.As(err, &se) {
		return err
	}
	st := se.GRPCStatus()
	if st == nil || st.Code() == codes.OK {
		// An error status saying "OK" is a contradiction: unknown.
		return &AgentError{Code: codes.Unknown, Msg: sanitizeAgentText(err.Error()), class: errdefs.ErrUnknown}
	}
	code := st.Code()
	cls, ok := agentClasses[code]
	if !ok {
		code, cls = codes.Unknown, errdefs.ErrUnknown // a code gRPC does not define
	}
	return &AgentError{Code: code, Msg: sanitizeAgentText(st.Message()), class: cls}
}

// agentClasses maps every gRPC code to containerd's errdefs class, as
// errdefs' own gRPC mapping does, including the classes containerd 1.7's
// FromGRPC folds into Unknown.
var agentClasses = map[codes.Code]error{
	codes.Canceled:           context.Canceled,
	codes.Unknown:            errdefs.ErrUnknown,
	codes.InvalidArgument:    errdefs.ErrInvalidArgument,
	codes.DeadlineExceeded:   context.DeadlineExceeded,
	codes.NotFound:           errdefs.ErrNotFound,
	codes.AlreadyExists:      errdefs.ErrAlreadyExists,
	codes.PermissionDenied:   errdefs.ErrPermissionDenied,
	codes.ResourceExhausted:  errdefs.ErrResourceExhausted,
	codes.FailedPrecondition: errdefs.ErrFailedPrecondition,
	codes.Aborted:            errdefs.ErrAborted,
	codes.OutOfRange:         errdefs.ErrOutOfRange,
	codes.Unimplemented:      errdefs.ErrNotImplemented,
	codes.Internal:           errdefs.ErrInternal,
	codes.Unavailable:        errdefs.ErrUnavailable,
	codes.DataLoss:           errdefs.ErrDataLoss,
	codes.Unauthenticated:    errdefs.ErrUnauthenticated,
}

// sanitizeAgentText makes guest-chosen text safe to log and pass on: valid
// UTF-8, no control or other unprintable characters (a newline could forge
// a log line, an escape sequence could drive a terminal), at most
// maxAgentMsg bytes.
func sanitizeAgentText(s string) string {
	truncated := false
	if len(s) > 4*maxAgentMsg {
		s, truncated = s[:4*maxAgentMsg], true // bound the work below
	}
	s = strings.ToValidUTF8(s, "?")
	s = strings.Map(func(r rune) rune {
		if unicode.IsPrint(r) {
			return r
		}
		return '?'
	}, s)
	if len(s) > maxAgentMsg {
		cut := maxAgentMsg
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s, truncated = s[:cut], true
	}
	if truncated {
		s += "... (truncated)"
	}
	return s
}
