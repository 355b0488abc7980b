package network

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
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

// The namespace's and the guest's ends of the port-forward link must agree
// everywhere they are written: the pass filters, the NAT rules, the guest
// address.
func TestLocalForwardAddressesAgree(t *testing.T) {
	hostIP, hostNet, err := net.ParseCIDR(hostLinkAddr)
	if err != nil {
		t.Fatal(err)
	}
	guestIP, _, err := net.ParseCIDR(guestLinkAddr)
	if err != nil {
		t.Fatal(err)
	}
	if !hostNet.Contains(guestIP) || hostIP.Equal(guestIP) {
		t.Fatalf("%s and %s are not two ends of one link", hostLinkAddr, guestLinkAddr)
	}
	if binary.BigEndian.Uint32(hostIP.To4()) != hostLinkIP {
		t.Errorf("pass filters match %#x, the namespace's end is %s", hostLinkIP, hostIP)
	}
	for _, f := range passFilters(7) {
		u := f.(*netlink.U32)
		if u.Priority >= redirectPriority || u.LinkIndex != 7 {
			t.Errorf("pass filter %+v would not run before the redirect on the tap", u.FilterAttrs)
		}
	}
	rules := fmt.Sprint(natRules("tap0_kata"))
	for _, want := range []string{"--to-destination " + guestIP.String(), "--to-source " + hostIP.String(), "-o tap0_kata", "-d 127.0.0.1/32"} {
		if !strings.Contains(rules, want) {
			t.Errorf("NAT rules %s lack %q", rules, want)
		}
	}
}
