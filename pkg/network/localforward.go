package network

import (
	"fmt"
	"net"
	"os"
	"os/exec"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Port-forward (kubectl port-forward) is implemented by containerd's CRI
// itself: it enters the pod's network namespace on the host and dials
// localhost:PORT there. With runc the pod's sockets are in that namespace;
// with a VM they are in the guest, and the namespace's own stack never sees
// the pod's traffic (tc redirects it past). So the namespace gets a small
// link of its own to the guest: the tap carries hostLinkAddr, the guest NIC
// guestLinkAddr, TCP to 127.0.0.1 is DNATed to the guest across it, and the
// tap's redirect lets through what is addressed to hostLinkAddr (replies,
// and ARP for it). Link-local /30: nothing outside the namespace sees it.
const (
	hostLinkAddr  = "169.254.255.1/30"
	guestLinkAddr = "169.254.255.2/30"
)

// hostLinkIP is hostLinkAddr's address as a u32 match value (host order;
// the netlink library puts it in network order).
const hostLinkIP = 0xa9feff01

// u32 offsets from the network header: an IPv4 header's destination, and
// an ARP (Ethernet/IPv4) packet's target protocol address.
const (
	ipv4DstOffset  = 16
	arpTargetIPOff = 24
)

// enableLocalForward sets up the namespace side; it runs on a thread in
// the pod's namespace (the iptables child inherits it).
func enableLocalForward(h *netlink.Handle, tap netlink.Link) error {
	a, err := netlink.ParseAddr(hostLinkAddr)
	if err != nil {
		return err
	}
	if err := h.AddrAdd(tap, a); err != nil {
		return fmt.Errorf("address %s on %s: %w", hostLinkAddr, tap.Attrs().Name, err)
	}
	for _, f := range passFilters(tap.Attrs().Index) {
		if err := h.FilterAdd(f); err != nil {
			return fmt.Errorf("pass filter on %s: %w", tap.Attrs().Name, err)
		}
	}
	// Packets from 127.0.0.1 may only leave lo with route_localnet.
	for _, dev := range []string{"all", tap.Attrs().Name} {
		if err := os.WriteFile("/proc/sys/net/ipv4/conf/"+dev+"/route_localnet", []byte("1"), 0o644); err != nil {
			return fmt.Errorf("route_localnet: %w", err)
		}
	}
	for _, rule := range natRules(tap.Attrs().Name) {
		if out, err := exec.Command("iptables", rule...).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %v: %w: %s", rule, err, out)
		}
	}
	return nil
}

// disableLocalForward drops the NAT rules (the tap's address and filters go
// with the tap), so a namespace that outlives the pod is left as found.
// It runs in the namespace; rules already gone are not an error.
func disableLocalForward(tap string) {
	for _, rule := range natRules(tap) {
		for i, a := range rule {
			if a == "-A" {
				rule[i] = "-D"
			}
		}
		_ = exec.Command("iptables", rule...).Run()
	}
}

// passFilters let what is addressed to the namespace's end of the link
// reach its stack: they come before the tap's catch-all redirect.
func passFilters(tap int) []netlink.Filter {
	pass := func(prio, proto uint16, off int32) netlink.Filter {
		return &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{LinkIndex: tap, Parent: netlink.MakeHandle(0xffff, 0), Priority: prio, Protocol: proto},
			Sel: &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Nkeys: 1,
				Keys: []netlink.TcU32Key{{Mask: 0xffffffff, Val: hostLinkIP, Off: off}}},
			// A match with a class and no action ends classification
			// with "ok": the packet goes on to the stack. (The gact
			// "pass" action is not built into every kernel.)
			ClassId: netlink.MakeHandle(1, 1),
		}
	}
	// One protocol per priority: tc refuses a second at the same one.
	return []netlink.Filter{pass(passIPPriority, unix.ETH_P_IP, ipv4DstOffset), pass(passARPPriority, unix.ETH_P_ARP, arpTargetIPOff)}
}

// natRules send TCP for 127.0.0.1 to the guest's end of the link, from
// the namespace's end (so replies come back over it).
func natRules(tap string) [][]string {
	guest, _, _ := net.ParseCIDR(guestLinkAddr)
	host, _, _ := net.ParseCIDR(hostLinkAddr)
	return [][]string{
		{"-w", "-t", "nat", "-A", "OUTPUT", "-o", "lo", "-d", "127.0.0.1/32", "-p", "tcp", "-j", "DNAT", "--to-destination", guest.String()},
		{"-w", "-t", "nat", "-A", "POSTROUTING", "-o", tap, "-s", "127.0.0.1/32", "-j", "SNAT", "--to-source", host.String()},
	}
}
