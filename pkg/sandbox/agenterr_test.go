package sandbox

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Each code the agent sends keeps its class through the host's %w wrapping.
func TestAgentErrorKeepsClass(t *testing.T) {
	for _, tc := range []struct {
		code codes.Code
		is   func(error) bool
	}{
		{codes.NotFound, errdefs.IsNotFound},
		{codes.AlreadyExists, errdefs.IsAlreadyExists},
		{codes.FailedPrecondition, errdefs.IsFailedPrecondition},
		{codes.InvalidArgument, errdefs.IsInvalidArgument},
		{codes.Unavailable, errdefs.IsUnavailable},
		{codes.Internal, errdefs.IsInternal},
		{codes.Unimplemented, errdefs.IsNotImplemented},
		{codes.ResourceExhausted, errdefs.IsResourceExhausted},
		{codes.PermissionDenied, errdefs.IsPermissionDenied},
		{codes.Canceled, errdefs.IsCanceled},
		{codes.DeadlineExceeded, errdefs.IsDeadlineExceeded},
		{codes.Unknown, errdefs.IsUnknown},
		{codes.Code(99), errdefs.IsUnknown}, // no such code
	} {
		err := fmt.Errorf("exec e in c: %w", agentError(status.Error(tc.code, "the agent says so")))
		if !tc.is(err) {
			t.Errorf("code %v: %v lost its class", tc.code, err)
		}
		var ae *AgentError
		if !errors.As(err, &ae) || ae.Msg != "the agent says so" {
			t.Errorf("code %v: %#v", tc.code, ae)
		}
		// The shim turns errors back into statuses: the code survives.
		if st, _ := status.FromError(err); st.Code() != ae.Code || !strings.Contains(st.Message(), "exec e in c: agent: the agent says so") {
			t.Errorf("code %v: back to a status: %v %q", tc.code, st.Code(), st.Message())
		}
	}
	// Classes are exclusive: NotFound is not FailedPrecondition.
	if err := agentError(status.Error(codes.NotFound, "x")); errdefs.IsFailedPrecondition(err) || errdefs.IsAlreadyExists(err) {
		t.Fatalf("%v has two classes", err)
	}
}

// Errors that are not the agent's answer are the host's own: unchanged.
func TestAgentErrorLeavesHostErrors(t *testing.T) {
	for _, err := range []error{nil, context.DeadlineExceeded, ttrpc.ErrClosed, ErrBadAnswer, errors.New("plain")} {
		if got := agentError(err); got != err {
			t.Errorf("%v became %v", err, got)
		}
	}
	once := agentError(status.Error(codes.NotFound, "x"))
	if agentError(once) != once || agentError(fmt.Errorf("ctx: %w", once)).Error() != "ctx: agent: x" {
		t.Fatal("an agent error is converted twice")
	}
	if err := agentError(okStatus{}); !errdefs.IsUnknown(err) {
		t.Fatalf("an error status saying OK: %v", err)
	}
}

// The guest chooses the text: bounded, valid UTF-8, printable.
func TestAgentErrorTextIsBoundedAndPrintable(t *testing.T) {
	for _, msg := range []string{
		strings.Repeat("A", 1<<20),
		"line one\nkata-go: forged log line\r\x1b[2J\x00",
		string([]byte{0xff, 0xfe, 'o', 'k'}),
		strings.Repeat("é", maxAgentMsg), // a cut must not split a rune
		"\u202egnp.exe",                  // bidi override
	} {
		err := agentError(status.Error(codes.Internal, msg))
		text := err.Error()
		if len(text) > maxAgentMsg+64 {
			t.Errorf("message of %d bytes kept as %d", len(msg), len(text))
		}
		if !utf8.ValidString(text) {
			t.Errorf("invalid UTF-8 kept: %q", text)
		}
		for _, r := range text {
			if !unicode.IsPrint(r) {
				t.Errorf("unprintable %U kept in %q", r, text)
				break
			}
		}
	}
	if got := sanitizeAgentText("container \"c\" not found"); got != "container \"c\" not found" {
		t.Fatalf("an honest message changed: %q", got)
	}
}

// explain converts, and still adds the VM's fate.
func TestExplainClassesAndDeath(t *testing.T) {
	s := &Sandbox{dead: make(chan struct{})}
	if err := s.explain(status.Error(codes.NotFound, "gone")); !errdefs.IsNotFound(err) {
		t.Fatal(err)
	}
	s.deadErr = errors.New("VM exited")
	close(s.dead)
	err := s.explain(status.Error(codes.Unavailable, "closing"))
	if !errdefs.IsUnavailable(err) || !strings.Contains(err.Error(), "VM exited") {
		t.Fatal(err)
	}
}

// okStatus is an error that claims the status OK.
type okStatus struct{}

func (okStatus) Error() string              { return "ok" }
func (okStatus) GRPCStatus() *status.Status { return status.New(codes.OK, "ok") }
