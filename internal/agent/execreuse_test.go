package agent

import (
	"context"
	"encoding/json"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// An exec id is refused while its process runs and taken again once it
// exited: the host holds ids until containerd deletes the exec, and
// containerd's clients reuse them.
func TestExecIDReusedAfterExit(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	runContainer(t, s, "c", false, "sleep", "100")
	exec := func(args ...string) error {
		ps, _ := json.Marshal(&specs.Process{Args: args, Cwd: "/"})
		_, err := s.ExecProcess(ctx, &agentapi.ExecProcessRequest{ContainerId: "c", ExecId: "e", Process: ps})
		return err
	}
	if err := exec("sleep", "100"); err != nil {
		t.Fatal(err)
	}
	if err := exec("true"); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("exec with a running exec's id: %v, want AlreadyExists", err)
	}
	if _, err := s.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: "c", ExecId: "e", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, "c", "e")
	for i := range 3 {
		if err := exec("true"); err != nil {
			t.Fatalf("round %d: exec with an exited exec's id: %v", i, err)
		}
		if st := waitStatus(t, s, "c", "e"); st.Status != 0 {
			t.Fatalf("round %d: status %d", i, st.Status)
		}
	}
	if _, err := s.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: "c", Signal: 9}); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, s, "c", "")
}
