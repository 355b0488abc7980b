package sandbox

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
)

// ProcState is where a process (a container's init or an exec) is in its
// life, as containerd's runc shim tracks it: created → running ⇄ paused →
// stopped → deleted. Every Task verb asks the table below what it may do
// in the state the process is in, so no verb re-derives the state from
// flags of its own.
type ProcState int

// The states, in the order a process passes through them.
const (
	StateCreated ProcState = iota // made in the guest, waiting for Start
	StateRunning                  // started and not yet known to have exited
	StatePaused                   // the container is frozen (inits only)
	StateStopped                  // exited, or never ran; the status is known
	StateDeleted                  // containerd deleted it; nothing more is done for it
)

func (s ProcState) String() string {
	switch s {
	case StateCreated:
		return "created"
	case StateRunning:
		return "running"
	case StatePaused:
		return "paused"
	case StateStopped:
		return "stopped"
	case StateDeleted:
		return "deleted"
	}
	return fmt.Sprintf("state(%d)", int(s))
}

// Verb is a Task API request as it applies to one process. Exec is asked
// of the container's init (may an exec be added to this container?); the
// container-wide verbs (Pause, Resume, Update, Pids, Stats) too.
type Verb int

// The Task API verbs that depend on a process's state.
const (
	VerbStart Verb = iota
	VerbKill
	VerbDelete
	VerbExec
	VerbPause
	VerbResume
	VerbUpdate
	VerbResize
	VerbCloseIO
	VerbState
	VerbWait
	VerbPids
	VerbStats
	numVerbs
)

var verbNames = [numVerbs]string{
	"start", "kill", "delete", "exec", "pause", "resume", "update", "resize", "closeIO", "state", "wait", "pids", "stats",
}

func (v Verb) String() string {
	if v >= 0 && v < numVerbs {
		return verbNames[v]
	}
	return fmt.Sprintf("verb(%d)", int(v))
}

// ErrWrongState marks a verb refused because of the process's state where
// containerd's runc shim gives the refusal no errdefs class (its
// init_state.go and exec_state.go answer with plain errors, which reach
// the client as codes.Unknown): start of a running process, exec into a
// paused or stopped container, pause of a created one, delete of a
// running one. kata-go answers the same, so a client that branches on the
// class sees what it sees with runc. It is deliberately not an errdefs
// class; errors.Is(err, ErrWrongState) tells it apart in tests.
var ErrWrongState = errors.New("not allowed in the process's state")

// refusal is one cell of the table: class is the errdefs class the
// refusal carries (nil: none, as runc's shim), why what the error says.
type refusal struct {
	class error
	why   string
}

// The answers of containerd's runc shim (containerd 1.7 pkg/process and
// 2.x cmd/containerd-shim-runc-v2/process) for each verb in each state: a
// verb missing from a state's map is allowed. Wait, State and CloseIO are
// allowed in every state a process can still be found in.
var (
	initRules = [...]map[Verb]refusal{
		StateCreated: {
			VerbPause:  {nil, "cannot pause a task in created state"},
			VerbResume: {nil, "cannot resume a task in created state"},
		},
		StateRunning: {
			VerbStart:  {nil, "cannot start a running process"},
			VerbDelete: {nil, "cannot delete a running process"},
			VerbResume: {nil, "cannot resume a running process"},
		},
		StatePaused: {
			VerbStart:  {nil, "cannot start a paused process"},
			VerbDelete: {nil, "cannot delete a paused process"},
			VerbExec:   {nil, "cannot exec in a paused state"},
			VerbPause:  {nil, "cannot pause a paused container"},
		},
		StateStopped: {
			VerbStart:  {nil, "cannot start a stopped process"},
			VerbKill:   {errdefs.ErrNotFound, "process already finished"},
			VerbExec:   {nil, "cannot exec in a stopped state"},
			VerbPause:  {nil, "cannot pause a stopped container"},
			VerbResume: {nil, "cannot resume a stopped container"},
			VerbUpdate: {nil, "cannot update a stopped container"},
		},
		StateDeleted: deletedRules,
	}
	execRules = [...]map[Verb]refusal{
		StateCreated: {
			VerbKill: {errdefs.ErrFailedPrecondition, "process not created"},
		},
		StateRunning: {
			VerbStart:  {nil, "cannot start a running process"},
			VerbDelete: {nil, "cannot delete a running process"},
		},
		// An exec is never paused itself; it reports paused while its
		// container is (see Process.Status), and answers as running.
		StatePaused: {
			VerbStart:  {nil, "cannot start a running process"},
			VerbDelete: {nil, "cannot delete a running process"},
		},
		StateStopped: {
			VerbStart:  {nil, "cannot start a stopped process"},
			VerbKill:   {errdefs.ErrNotFound, "process already finished"},
			VerbResize: {nil, "cannot resize a stopped container"},
		},
		StateDeleted: deletedRules,
	}
	deletedRules = map[Verb]refusal{
		VerbStart:  {nil, "cannot start a deleted process"},
		VerbKill:   {errdefs.ErrNotFound, "cannot kill a deleted process"},
		VerbDelete: {errdefs.ErrNotFound, "cannot delete a deleted process"},
		VerbExec:   {nil, "cannot exec in a deleted state"},
		VerbPause:  {nil, "cannot pause a deleted process"},
		VerbResume: {nil, "cannot resume a deleted process"},
		VerbUpdate: {nil, "cannot update a deleted process"},
		VerbResize: {nil, "cannot resize a deleted process"},
		VerbPids:   {errdefs.ErrNotFound, "process deleted"},
		VerbStats:  {errdefs.ErrNotFound, "process deleted"},
	}
)

// Allowed says whether v may be done to a process in state s (exec: the
// process is an exec, not an init). nil means go ahead; otherwise the
// error is the one containerd's runc shim answers, with its class.
func Allowed(s ProcState, v Verb, exec bool) error {
	rules := initRules[:]
	if exec {
		rules = execRules[:]
	}
	if s < 0 || int(s) >= len(rules) || v < 0 || v >= numVerbs {
		return fmt.Errorf("cannot %s in %s: %w", v, s, ErrWrongState)
	}
	r, refused := rules[s][v]
	if !refused {
		return nil
	}
	if r.class == nil {
		return fmt.Errorf("%s: %w", r.why, ErrWrongState)
	}
	return fmt.Errorf("%s: %w", r.why, r.class)
}

// next says whether a process may move from one state to another. A
// paused init that exits (killed while frozen) stops; a process that never
// ran stops without running; only a created or stopped one is deleted.
func next(from, to ProcState) bool {
	switch from {
	case StateCreated:
		return to == StateRunning || to == StateStopped || to == StateDeleted
	case StateRunning:
		return to == StatePaused || to == StateStopped
	case StatePaused:
		return to == StateRunning || to == StateStopped
	case StateStopped:
		return to == StateDeleted
	}
	return false
}
