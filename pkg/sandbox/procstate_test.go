package sandbox

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// answer is how a verb is answered: allowed, or refused with a class.
type answer string

const (
	ok      answer = "ok"
	unknown answer = "unknown" // no class: codes.Unknown, as runc's shim answers
	notF    answer = "NotFound"
	preF    answer = "FailedPrecondition"
)

func classOf(err error) answer {
	switch {
	case err == nil:
		return ok
	case errdefs.IsNotFound(err):
		return notF
	case errdefs.IsFailedPrecondition(err):
		return preF
	case errors.Is(err, ErrWrongState):
		return unknown
	}
	return answer("unexpected: " + err.Error())
}

// What containerd's runc shim answers, read from its pkg/process
// (init_state.go, exec_state.go, deleted_state.go, exec.go's kill) in
// containerd 1.7.35 and 2.4.2, written out again here by hand so the test
// does not restate the table it checks. Columns follow the Verb order:
// start kill delete exec pause resume update resize closeIO state wait pids stats.
var runcInit = map[ProcState][numVerbs]answer{
	StateCreated: {ok, ok, ok, ok, unknown, unknown, ok, ok, ok, ok, ok, ok, ok},
	StateRunning: {unknown, ok, unknown, ok, ok, unknown, ok, ok, ok, ok, ok, ok, ok},
	StatePaused:  {unknown, ok, unknown, unknown, unknown, ok, ok, ok, ok, ok, ok, ok, ok},
	StateStopped: {unknown, notF, ok, unknown, unknown, unknown, unknown, ok, ok, ok, ok, ok, ok},
	StateDeleted: {unknown, notF, notF, unknown, unknown, unknown, unknown, unknown, ok, ok, ok, notF, notF},
}

var runcExec = map[ProcState][numVerbs]answer{
	// A created exec has no pid yet: kill says "process not created".
	StateCreated: {ok, preF, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok},
	StateRunning: {unknown, ok, unknown, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok},
	StatePaused:  {unknown, ok, unknown, ok, ok, ok, ok, ok, ok, ok, ok, ok, ok},
	StateStopped: {unknown, notF, ok, ok, ok, ok, ok, unknown, ok, ok, ok, ok, ok},
	StateDeleted: {unknown, notF, notF, unknown, unknown, unknown, unknown, unknown, ok, ok, ok, notF, notF},
}

func TestEveryVerbInEveryState(t *testing.T) {
	for _, kind := range []struct {
		name string
		exec bool
		want map[ProcState][numVerbs]answer
	}{{"init", false, runcInit}, {"exec", true, runcExec}} {
		for st := StateCreated; st <= StateDeleted; st++ {
			for v := Verb(0); v < numVerbs; v++ {
				err := Allowed(st, v, kind.exec)
				if got, want := classOf(err), kind.want[st][v]; got != want {
					t.Errorf("%s %s in %s: %s (%v), want %s", kind.name, v, st, got, err, want)
				}
				// A refusal says what was refused, in runc's words.
				if err != nil && !strings.Contains(err.Error(), "cannot") && !strings.Contains(err.Error(), "process") {
					t.Errorf("%s %s in %s: %q does not say why", kind.name, v, st, err)
				}
			}
		}
	}
}

// A refusal without a class must stay without one: errdefs.ToGRPC would
// otherwise turn it into something runc's shim never answers.
func TestWrongStateHasNoClass(t *testing.T) {
	err := Allowed(StatePaused, VerbExec, false)
	for name, is := range map[string]func(error) bool{
		"InvalidArgument": errdefs.IsInvalidArgument, "NotFound": errdefs.IsNotFound,
		"AlreadyExists": errdefs.IsAlreadyExists, "FailedPrecondition": errdefs.IsFailedPrecondition,
		"Unavailable": errdefs.IsUnavailable, "Internal": errdefs.IsInternal, "Unknown": errdefs.IsUnknown,
	} {
		if is(err) {
			t.Errorf("exec into a paused container is classed %s: %v", name, err)
		}
	}
}

func TestTransitions(t *testing.T) {
	allowed := map[[2]ProcState]bool{
		{StateCreated, StateRunning}: true, {StateCreated, StateStopped}: true, {StateCreated, StateDeleted}: true,
		{StateRunning, StatePaused}: true, {StateRunning, StateStopped}: true,
		{StatePaused, StateRunning}: true, {StatePaused, StateStopped}: true,
		{StateStopped, StateDeleted}: true,
	}
	for from := StateCreated; from <= StateDeleted; from++ {
		for to := StateCreated; to <= StateDeleted; to++ {
			if got := next(from, to); got != allowed[[2]ProcState{from, to}] {
				t.Errorf("%s → %s: allowed %v", from, to, got)
			}
		}
	}
}

func TestUnknownStateAndVerbAreRefused(t *testing.T) {
	if err := Allowed(ProcState(42), VerbKill, false); !errors.Is(err, ErrWrongState) {
		t.Errorf("verb in an unknown state: %v", err)
	}
	if err := Allowed(StateRunning, Verb(99), false); !errors.Is(err, ErrWrongState) {
		t.Errorf("an unknown verb: %v", err)
	}
	if s := Verb(99).String(); !strings.Contains(s, "99") {
		t.Errorf("unknown verb prints as %q", s)
	}
}
