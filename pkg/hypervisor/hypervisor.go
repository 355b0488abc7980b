// Package hypervisor starts and stops the pod VM behind one small interface.
// QEMU is the first implementation; Firecracker fits the same shape (its
// agent address is a hybrid vsock socket).
package hypervisor

import (
	"context"
	"os"
)

// Hypervisor is one VM.
type Hypervisor interface {
	// AddDevice queues a device for the VM; all devices are given at Start
	// (the microvm machine has no hotplug).
	AddDevice(d Device) error
	// Start launches the VMM (and its helper daemons) and returns once the
	// process runs; the guest boots asynchronously.
	Start(ctx context.Context) error
	// Stop ends the VM: a graceful quit, then SIGKILL. Safe to call twice.
	Stop(ctx context.Context) error
	// Exited is closed when the VMM process has ended.
	Exited() <-chan struct{}
	// ExitErr says why the VMM ended; valid once Exited is closed.
	ExitErr() error
	// Pids are the host processes of this VM (VMM first, then helpers).
	Pids() []int
	// AgentAddress is where the agent is dialled.
	AgentAddress() AgentAddress
	// Capabilities tells what this VMM on this host supports.
	Capabilities() Capabilities
	// ConsoleLog is the file that holds the guest's serial console.
	ConsoleLog() string
	// ConsoleTail is the console's last n lines, with anything not
	// printable replaced: guest bytes fit for an error message.
	ConsoleTail(n int) string
}

// Transport is how the host reaches the agent.
type Transport string

const (
	// TransportSerial is a virtio-serial port behind a QEMU chardev unix socket.
	TransportSerial Transport = "serial"
	// TransportVsock is AF_VSOCK through /dev/vhost-vsock.
	TransportVsock Transport = "vsock"
	// TransportHybridVsock is a unix socket that takes "CONNECT <port>\n" (Firecracker).
	TransportHybridVsock Transport = "hybrid-vsock"
)

// AgentAddress names the agent's endpoint for the agent client.
type AgentAddress struct {
	Transport Transport
	Path      string // unix socket for serial and hybrid vsock
	CID       uint32 // vsock context id
	Port      uint32 // vsock port
	// Secret is what the agent wants proven before it serves (the
	// Config's AgentSecret).
	Secret []byte
}

// Capabilities of a hypervisor on this host.
type Capabilities struct {
	Hotplug  bool
	VirtioFS bool
	NineP    bool
	Vsock    bool
}

// Device is a typed VM device; the set of kinds is closed.
type Device interface{ isDevice() }

// SharedFSType selects how a host directory reaches the guest.
type SharedFSType string

const (
	SharedFSVirtioFS SharedFSType = "virtio-fs"
	SharedFS9P       SharedFSType = "9p"
)

// SharedDir exports a host directory to the guest under Tag.
type SharedDir struct {
	Tag      string
	HostPath string
	Type     SharedFSType
}

// NetTap is a tap device handed to the VMM as open queue fds.
type NetTap struct {
	ID  string
	MAC string
	FDs []*os.File
}

// Block is a raw file or block device.
type Block struct {
	ID       string
	Path     string
	ReadOnly bool
}

func (SharedDir) isDevice() {}
func (NetTap) isDevice()    {}
func (Block) isDevice()     {}
