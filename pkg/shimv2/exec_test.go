package shimv2

import (
	"os"
	"path/filepath"
	"testing"

	eventstypes "github.com/containerd/containerd/api/events"
	taskAPI "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/errdefs"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/kata-go/kata-go/pkg/sandbox/sandboxtest"
)

func execSpec(args ...string) *anypb.Any {
	b := []byte(`{"args":[`)
	for i, a := range args {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, a...)
		b = append(b, '"')
	}
	b = append(b, `],"cwd":"/"}`...)
	return &anypb.Any{TypeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process", Value: b}
}

func TestExecOutputToFileAndEvents(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	log := filepath.Join(t.TempDir(), "exec.log")
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec("fail"), Stdout: "file://" + log}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "e")
	if got := h.wait("c", "e"); got != 3 {
		t.Fatalf("exec status %d, want 3", got)
	}
	// Exit is reported only after output is written: the file is complete now.
	b, err := os.ReadFile(log)
	if err != nil || (string(b) != "out\nerr\n" && string(b) != "err\nout\n") {
		t.Fatalf("log file %q: %v", b, err)
	}
	if ev := h.event(topicExecAdded).(*eventstypes.TaskExecAdded); ev.ExecID != "e" {
		t.Fatalf("TaskExecAdded %+v", ev)
	}
	if ev := h.event(topicExecStarted).(*eventstypes.TaskExecStarted); ev.ExecID != "e" || ev.Pid != sandboxtest.VMMPid {
		t.Fatalf("TaskExecStarted %+v", ev)
	}
	if _, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "e"}); err != nil {
		t.Fatalf("delete exec: %v", err)
	}
}

func TestExecRejectsDuplicatesAndBadSpecs(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	req := &taskAPI.ExecProcessRequest{ID: "c", ExecID: "e", Spec: execSpec("sleep")}
	if _, err := h.s.Exec(h.ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := h.s.Exec(h.ctx, req); err == nil {
		t.Fatal("duplicate exec id accepted")
	}
	bad := &taskAPI.ExecProcessRequest{ID: "c", ExecID: "b", Spec: &anypb.Any{Value: []byte("{")}}
	if _, err := h.s.Exec(h.ctx, bad); !errdefs.IsInvalidArgument(errdefs.FromGRPC(err)) {
		t.Fatalf("bad exec spec: %v", err)
	}
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "nope", ExecID: "x", Spec: execSpec("true")}); !errdefs.IsNotFound(errdefs.FromGRPC(err)) {
		t.Fatalf("exec in a missing task: %v", err)
	}
	// An exec never started is deleted cleanly (its IO is released).
	within(t, "delete of an unstarted exec", func() error {
		_, err := h.s.Delete(h.ctx, &taskAPI.DeleteRequest{ID: "c", ExecID: "e"})
		return err
	})
}

// binary:// log drivers get the output on fds 3 and 4 (containerd's
// protocol) and must have it all before the exit is reported.
func TestExecOutputToBinaryLogger(t *testing.T) {
	h := newHarness(t, runs)
	h.create("c", "sleep")
	h.start("c", "")
	dir := t.TempDir()
	logger := filepath.Join(dir, "logger.sh")
	out := filepath.Join(dir, "out")
	script := "#!/bin/sh\n# args: out PATH\nexec 5>&-\ncat <&3 > \"$2\" &\ncat <&4 > \"$2.err\"\nwait\n"
	if err := os.WriteFile(logger, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	uri := "binary://" + logger + "?out=" + out
	if _, err := h.s.Exec(h.ctx, &taskAPI.ExecProcessRequest{ID: "c", ExecID: "b", Spec: execSpec("fail"), Stdout: uri, Stderr: uri}); err != nil {
		t.Fatal(err)
	}
	h.start("c", "b")
	if got := h.wait("c", "b"); got != 3 {
		t.Fatalf("status %d", got)
	}
	o, _ := os.ReadFile(out)
	e, _ := os.ReadFile(out + ".err")
	if string(o) != "out\n" || string(e) != "err\n" {
		t.Fatalf("logger got stdout %q stderr %q", o, e)
	}
}
