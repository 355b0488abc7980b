// Package network wires a pod's network namespace (made by CNI under CRI)
// to its VM: for each veth it creates a tap in the same namespace and joins
// the two with tc mirred redirects (or uses a macvtap on the veth), so the
// guest NIC, given the veth's MAC and addresses, is the pod's interface.
package network

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Model is how a veth is joined to the VM.
type Model string

const (
	TCFilter Model = "tcfilter"
	MacVTap  Model = "macvtap"
	None     Model = "none"
)

// Endpoint is one pod interface and the tap that carries it to the VM.
type Endpoint struct {
	Veth  string
	MAC   string
	MTU   int
	Addrs []string // CIDR
	Tap   string
	// TapFile is the open tap queue for QEMU (owned by Pod until Close).
	TapFile *os.File
}

// Route is a route of the pod namespace, by device name.
type Route struct {
	Dest, Gateway, Device, Source string
	Scope                         uint8
}

// Pod is a wired namespace.
type Pod struct {
	NetNS     string
	Model     Model
	Endpoints []Endpoint
	Routes    []Route
	// GuestLinkAddr, when set, is an address the first endpoint's guest
	// NIC must also carry: the guest's end of the namespace's link for
	// port-forward (see localforward.go).
	GuestLinkAddr string
	// LocalForwardErr says why port-forward could not be set up (the pod
	// works without it).
	LocalForwardErr error
}

// Wire scans netnsPath and wires every veth with an address. A namespace
// with no such veth wires nothing (the pod just has no network).
func Wire(netnsPath string, model Model) (_ *Pod, retErr error) {
	if model == None || netnsPath == "" {
		return &Pod{NetNS: netnsPath, Model: None}, nil
	}
	if model != TCFilter && model != MacVTap {
		return nil, fmt.Errorf("network model %q: want tcfilter, macvtap or none", model)
	}
	p := &Pod{NetNS: netnsPath, Model: model}
	err := inNetNS(netnsPath, func(h *netlink.Handle) error {
		links, err := h.LinkList()
		if err != nil {
			return fmt.Errorf("list links: %w", err)
		}
		for _, l := range links {
			if l.Type() != "veth" {
				continue
			}
			addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
			if err != nil {
				return err
			}
			ep := Endpoint{Veth: l.Attrs().Name, MAC: l.Attrs().HardwareAddr.String(), MTU: l.Attrs().MTU}
			for _, a := range addrs {
				if a.IP.IsLinkLocalUnicast() {
					continue
				}
				ep.Addrs = append(ep.Addrs, a.IPNet.String())
			}
			if len(ep.Addrs) == 0 {
				continue
			}
			ep.Tap = fmt.Sprintf("tap%d_kata", len(p.Endpoints))
			if err := wireOne(h, l, &ep, model); err != nil {
				return fmt.Errorf("wire %s: %w", ep.Veth, err)
			}
			// A macvtap's own traffic leaves by the veth, never the VM,
			// so only the tc model can carry port-forward.
			if len(p.Endpoints) == 0 && model == TCFilter {
				if tap, err := h.LinkByName(ep.Tap); err != nil {
					p.LocalForwardErr = err
				} else if p.LocalForwardErr = enableLocalForward(h, tap); p.LocalForwardErr == nil {
					p.GuestLinkAddr = guestLinkAddr
				}
			}
			p.Endpoints = append(p.Endpoints, ep)
			routes, err := h.RouteList(l, netlink.FAMILY_V4)
			if err != nil {
				return err
			}
			for _, r := range routes {
				rt := Route{Device: ep.Veth, Scope: uint8(r.Scope)}
				if r.Dst != nil {
					rt.Dest = r.Dst.String()
				}
				if r.Gw != nil {
					rt.Gateway = r.Gw.String()
				}
				if r.Src != nil {
					rt.Source = r.Src.String()
				}
				p.Routes = append(p.Routes, rt)
			}
		}
		return nil
	})
	if err != nil {
		p.Close()
		return nil, fmt.Errorf("network of %s: %w", netnsPath, err)
	}
	return p, nil
}

func wireOne(h *netlink.Handle, veth netlink.Link, ep *Endpoint, model Model) error {
	if model == MacVTap {
		mv := &netlink.Macvtap{Macvlan: netlink.Macvlan{
			LinkAttrs: netlink.LinkAttrs{Name: ep.Tap, ParentIndex: veth.Attrs().Index, MTU: ep.MTU, TxQLen: 1000},
			Mode:      netlink.MACVLAN_MODE_PASSTHRU,
		}}
		if err := h.LinkAdd(mv); err != nil {
			return fmt.Errorf("add macvtap: %w", err)
		}
		l, err := h.LinkByName(ep.Tap)
		if err != nil {
			return err
		}
		// The macvtap answers for the veth's MAC: the guest NIC uses it.
		if err := h.LinkSetHardwareAddr(l, veth.Attrs().HardwareAddr); err != nil {
			return err
		}
		if err := h.LinkSetUp(l); err != nil {
			return err
		}
		f, err := os.OpenFile(fmt.Sprintf("/dev/tap%d", l.Attrs().Index), os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("open macvtap device: %w", err)
		}
		ep.TapFile = f
		return nil
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.LinkAttrs{Name: ep.Tap, MTU: ep.MTU, TxQLen: 1000},
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_MULTI_QUEUE_DEFAULTS,
		Queues:    1,
	}
	if err := h.LinkAdd(tap); err != nil {
		return fmt.Errorf("add tap: %w", err)
	}
	if len(tap.Fds) != 1 {
		return fmt.Errorf("tap %s: got %d queue fds, want 1", ep.Tap, len(tap.Fds))
	}
	ep.TapFile = tap.Fds[0]
	l, err := h.LinkByName(ep.Tap)
	if err != nil {
		return err
	}
	if err := h.LinkSetUp(l); err != nil {
		return err
	}
	// Everything that enters the veth leaves by the tap and back: the
	// namespace's own IP stack never sees the pod's traffic.
	if err := redirect(h, veth.Attrs().Index, l.Attrs().Index); err != nil {
		return err
	}
	return redirect(h, l.Attrs().Index, veth.Attrs().Index)
}

// Filter priorities on an ingress qdisc: lower runs first.
const (
	passIPPriority   = 1
	passARPPriority  = 2
	redirectPriority = 3
)

// redirect sends all ingress traffic of from out of to (u32 match-all with
// a mirred egress redirect; matchall/flower are not always built).
func redirect(h *netlink.Handle, from, to int) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: from, Parent: netlink.HANDLE_INGRESS, Handle: netlink.MakeHandle(0xffff, 0)}}
	if err := h.QdiscAdd(q); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add ingress qdisc: %w", err)
	}
	f := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: from, Parent: netlink.MakeHandle(0xffff, 0), Priority: redirectPriority, Protocol: unix.ETH_P_ALL},
		Sel:         &netlink.TcU32Sel{Flags: netlink.TC_U32_TERMINAL, Nkeys: 1, Keys: []netlink.TcU32Key{{Mask: 0, Val: 0}}},
		Actions: []netlink.Action{&netlink.MirredAction{
			ActionAttrs:  netlink.ActionAttrs{Action: netlink.TC_ACT_STOLEN},
			MirredAction: netlink.TCA_EGRESS_REDIR, Ifindex: to,
		}},
	}
	if err := h.FilterAdd(f); err != nil {
		return fmt.Errorf("add redirect filter: %w", err)
	}
	return nil
}

// CloseFiles closes the shim's tap fds only (the devices stay).
func (p *Pod) CloseFiles() {
	for i := range p.Endpoints {
		if p.Endpoints[i].TapFile != nil {
			p.Endpoints[i].TapFile.Close()
			p.Endpoints[i].TapFile = nil
		}
	}
}

// Close drops the taps (their filters go with them), the veths' ingress
// qdiscs and the tap fds. Safe to call more than once.
func (p *Pod) Close() error {
	p.CloseFiles()
	if p.Model == None || len(p.Endpoints) == 0 {
		return nil
	}
	err := inNetNS(p.NetNS, func(h *netlink.Handle) error {
		var errs []error
		if p.GuestLinkAddr != "" {
			disableLocalForward(p.Endpoints[0].Tap)
		}
		for _, ep := range p.Endpoints {
			if l, err := h.LinkByName(ep.Tap); err == nil {
				errs = append(errs, h.LinkDel(l))
			}
			if l, err := h.LinkByName(ep.Veth); err == nil {
				q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{LinkIndex: l.Attrs().Index, Parent: netlink.HANDLE_INGRESS, Handle: netlink.MakeHandle(0xffff, 0)}}
				if err := h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
					errs = append(errs, err)
				}
			}
		}
		return errors.Join(errs...)
	})
	p.Endpoints = nil
	return err
}

// inNetNS runs fn on a thread inside the namespace (tap creation opens
// /dev/net/tun, which binds the device to the calling thread's namespace).
func inNetNS(path string, fn func(*netlink.Handle) error) error {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			errc <- err
			return
		}
		h, err := netlink.NewHandle()
		if err != nil {
			errc <- err
			_ = netns.Set(orig)
			return
		}
		err = fn(h)
		h.Close()
		if serr := netns.Set(orig); serr != nil {
			// The thread is in the wrong namespace: let Go retire it
			// (a locked thread whose goroutine exits is terminated).
			errc <- errors.Join(err, serr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}
