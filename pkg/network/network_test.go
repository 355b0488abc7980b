package network

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestNoNamespaceOrNoneWiresNothing(t *testing.T) {
	for _, c := range []struct {
		ns    string
		model Model
	}{{"", TCFilter}, {"/var/run/netns/x", None}} {
		p, err := Wire(c.ns, c.model)
		if err != nil || len(p.Endpoints) != 0 || p.Model != None {
			t.Fatalf("Wire(%q, %s) = %+v, %v", c.ns, c.model, p, err)
		}
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestBadModelAndMissingNamespaceAreNamed(t *testing.T) {
	if _, err := Wire("/var/run/netns/x", "bridge"); err == nil || !strings.Contains(err.Error(), "bridge") {
		t.Fatalf("bad model: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Log("not root: skipping the namespace lookup case")
		return
	}
	if _, err := Wire("/nonexistent/netns", TCFilter); err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") {
		t.Fatalf("missing netns: %v", err)
	}
}
