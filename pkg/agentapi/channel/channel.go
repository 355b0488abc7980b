// Package channel holds the constants both ends of the agent channel agree on.
package channel

const (
	// VsockPort is the agent's vsock port, as in Kata Containers.
	VsockPort = 1024
	// SerialPortName is the virtio-serial port name the agent looks for.
	SerialPortName = "agent.channel.0"
	// SerialReady is the line the agent writes on the serial port once the
	// host is connected; the host reads it before the first ttrpc request,
	// so no request can reach a port the guest has not opened yet.
	SerialReady = "KATA-GO-AGENT-READY\n"
)
