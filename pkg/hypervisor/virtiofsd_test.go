package hypervisor

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestVirtiofsdArgsUseNamespaceSandbox(t *testing.T) {
	a := strings.Join(virtiofsdArgs("/s/v.sock", "/s/shared"), " ")
	if !strings.Contains(a, "-o sandbox=namespace") || strings.Contains(a, "chroot") {
		t.Errorf("virtiofsd args %q: want sandbox=namespace", a)
	}
}

// A daemon's forked worker is waited for, and killed if it outlives its
// parent, so a stopped VM leaves no process.
func TestChildrenAreWaitedForOrKilled(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "sleep 100 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var kids []proc
	for i := 0; i < 500 && len(kids) == 0; i++ {
		kids = childrenOf(cmd.Process.Pid)
		time.Sleep(2 * time.Millisecond)
	}
	if len(kids) != 1 {
		t.Fatalf("children of sh: %v", kids)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !kids[0].alive() {
		t.Fatal("the orphan died with its parent; the test shows nothing")
	}
	kids[0].waitOrKill(50 * time.Millisecond)
	if kids[0].alive() {
		t.Fatal("orphaned child still alive")
	}
}
