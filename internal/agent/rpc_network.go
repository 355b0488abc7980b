package agent

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// UpdateInterface configures the guest NIC whose MAC matches (the host gives
// the guest NIC the pod veth's MAC), so names need not agree.
func (s *service) UpdateInterface(ctx context.Context, r *agentapi.UpdateInterfaceRequest) (*agentapi.Interface, error) {
	want := r.Interface
	if want == nil {
		return nil, errf(codes.InvalidArgument, "interface is required")
	}
	find := want
	if r.CurrentHwAddr != "" {
		find = &agentapi.Interface{HwAddr: r.CurrentHwAddr}
	}
	link, err := findLink(find)
	if err != nil {
		return nil, errf(codes.NotFound, "%v", err)
	}
	if r.CurrentHwAddr != "" && want.HwAddr != "" && !strings.EqualFold(r.CurrentHwAddr, want.HwAddr) {
		mac, err := net.ParseMAC(want.HwAddr)
		if err != nil {
			return nil, errf(codes.InvalidArgument, "mac %q: %v", want.HwAddr, err)
		}
		// The link is still down (a template never brings it up), so
		// the device takes the new address before any frame leaves.
		if err := netlink.LinkSetHardwareAddr(link, mac); err != nil {
			return nil, errf(codes.Internal, "set mac of %s to %s: %v", link.Attrs().Name, mac, err)
		}
		if link, err = netlink.LinkByIndex(link.Attrs().Index); err != nil {
			return nil, errf(codes.Internal, "re-read %s: %v", find.HwAddr, err)
		}
	}
	if want.Mtu > 0 {
		if err := netlink.LinkSetMTU(link, int(want.Mtu)); err != nil {
			return nil, errf(codes.Internal, "set mtu of %s: %v", link.Attrs().Name, err)
		}
	}
	for _, a := range want.Addresses {
		addr, err := netlink.ParseAddr(a.Address)
		if err != nil {
			return nil, errf(codes.InvalidArgument, "address %q: %v", a.Address, err)
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return nil, errf(codes.Internal, "add %s to %s: %v", a.Address, link.Attrs().Name, err)
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return nil, errf(codes.Internal, "set %s up: %v", link.Attrs().Name, err)
	}
	return &agentapi.Interface{Name: link.Attrs().Name, HwAddr: link.Attrs().HardwareAddr.String(), Mtu: uint32(link.Attrs().MTU), Addresses: want.Addresses}, nil
}

func findLink(want *agentapi.Interface) (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if want.HwAddr != "" && strings.EqualFold(l.Attrs().HardwareAddr.String(), want.HwAddr) {
			return l, nil
		}
	}
	for _, l := range links {
		if want.HwAddr == "" && want.Name != "" && l.Attrs().Name == want.Name {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no guest interface with mac %q or name %q", want.HwAddr, want.Name)
}

func (s *service) UpdateRoutes(ctx context.Context, r *agentapi.UpdateRoutesRequest) (*agentapi.Empty, error) {
	for _, rt := range r.Routes {
		nr, err := netlinkRoute(rt)
		if err != nil {
			return nil, errf(codes.InvalidArgument, "%v", err)
		}
		if err := netlink.RouteReplace(nr); err != nil {
			return nil, errf(codes.Internal, "add route %s via %s: %v", rt.Destination, rt.Gateway, err)
		}
	}
	return &agentapi.Empty{}, nil
}

func netlinkRoute(rt *agentapi.Route) (*netlink.Route, error) {
	nr := &netlink.Route{Scope: netlink.Scope(rt.Scope)}
	if rt.Device != "" {
		l, err := netlink.LinkByName(rt.Device)
		if err != nil {
			return nil, fmt.Errorf("route device %q: %w", rt.Device, err)
		}
		nr.LinkIndex = l.Attrs().Index
	}
	if rt.Destination != "" && rt.Destination != "default" {
		_, dst, err := net.ParseCIDR(rt.Destination)
		if err != nil {
			return nil, fmt.Errorf("route destination %q: %w", rt.Destination, err)
		}
		nr.Dst = dst
	}
	if rt.Gateway != "" {
		if nr.Gw = net.ParseIP(rt.Gateway); nr.Gw == nil {
			return nil, fmt.Errorf("route gateway %q is not an IP", rt.Gateway)
		}
	}
	if rt.Source != "" {
		if nr.Src = net.ParseIP(rt.Source); nr.Src == nil {
			return nil, fmt.Errorf("route source %q is not an IP", rt.Source)
		}
	}
	return nr, nil
}
