package agent

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/mdlayher/vsock"

	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

// listen finds the agent's channel: vsock when the VM has a virtio-vsock
// device, else the virtio-serial port named channel.SerialPortName. Devices
// probe asynchronously, so it looks until the deadline.
func listen(wait time.Duration) (net.Listener, error) {
	deadline := time.Now().Add(wait)
	for {
		if hasVirtioDevice(virtioIDVsock) {
			l, err := vsock.Listen(channel.VsockPort, nil)
			if err != nil {
				return nil, fmt.Errorf("listen on vsock port %d: %w", channel.VsockPort, err)
			}
			return l, nil
		}
		if dev, ok := findSerialPort(channel.SerialPortName); ok {
			return newSerialListener(dev), nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("no agent channel after %s: no virtio-vsock device and no virtio-serial port named %q", wait, channel.SerialPortName)
		}
		time.Sleep(5 * time.Millisecond) // no uevent without udev: poll sysfs
	}
}

const virtioIDVsock = "0x0013"

func hasVirtioDevice(id string) bool {
	ids, _ := filepath.Glob("/sys/bus/virtio/devices/*/device")
	for _, p := range ids {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == id {
			return true
		}
	}
	return false
}

// findSerialPort resolves a virtio-serial port name to its /dev node.
func findSerialPort(name string) (string, bool) {
	names, _ := filepath.Glob("/sys/class/virtio-ports/*/name")
	for _, p := range names {
		if b, err := os.ReadFile(p); err == nil && strings.TrimSpace(string(b)) == name {
			return "/dev/" + filepath.Base(filepath.Dir(p)), true
		}
	}
	return "", false
}
