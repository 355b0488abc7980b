package hypervisor

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testConfig(t *testing.T) *Config {
	dir := t.TempDir()
	for _, f := range []string{"qemu", "vmlinux", "initrd"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &Config{
		QEMUPath: filepath.Join(dir, "qemu"), Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initrd"),
		MachineType: "microvm", Accelerator: AccelAuto, VCPUs: 2, MemoryMiB: 256, Transport: TransportSerial, StateDir: dir,
	}
}

func joined(a []string) string { return strings.Join(a, " ") }

func TestArgsMicrovmVirtioFS(t *testing.T) {
	c := testConfig(t)
	c.TBSizeMiB = 64
	l := &launch{cfg: c, accel: AccelTCG, cpu: "max", tscKHz: 2500000, devices: []Device{
		SharedDir{Tag: "kataShared", HostPath: "/s", Type: SharedFSVirtioFS},
	}}
	a := joined(l.args())
	for _, want := range []string{
		"-machine microvm,acpi=off,x-option-roms=off,memory-backend=mem",
		"-accel tcg,tb-size=64", "-smp 2", "-m 256M", "-nodefaults", "-no-reboot",
		"memory-backend-memfd,id=mem,size=256M,share=on",
		"-global virtio-mmio.force-legacy=off",
		"vhost-user-fs-device,chardev=fs0,tag=kataShared",
		"virtserialport,chardev=agent,name=agent.channel.0",
		"tsc_early_khz=2500000", "quiet", "noapictimer",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %q:\n%s", want, a)
		}
	}
	if strings.Contains(a, "vhost=on") {
		t.Error("vhost=on is never passed: this host has no vhost-net")
	}
}

func TestArgsQ35NinePTapKVM(t *testing.T) {
	c := testConfig(t)
	c.MachineType = "q35"
	c.Debug = true
	l := &launch{cfg: c, accel: AccelKVM, cpu: "host", devices: []Device{
		SharedDir{Tag: "t", HostPath: "/s", Type: SharedFS9P},
		NetTap{ID: "n", MAC: "02:00:00:00:00:01", FDs: []*os.File{os.Stdin, os.Stdout}},
		Block{ID: "b", Path: "/img", ReadOnly: true},
	}}
	a := joined(l.args())
	for _, want := range []string{
		"-machine q35", "-accel kvm", "-cpu host", "virtio-9p-pci,fsdev=fsdev0,mount_tag=t",
		"tap,id=net0,fds=3:4,vhost=off", "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01",
		"readonly=on", "virtio-blk-pci,drive=blk0", "virtio-serial-pci",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %q:\n%s", want, a)
		}
	}
	for _, bad := range []string{"memory-backend", "tsc_early_khz", "quiet", "force-legacy", "noapictimer"} {
		if strings.Contains(a, bad) {
			t.Errorf("args have %q:\n%s", bad, a)
		}
	}
}

func TestValidateNamesTheProblem(t *testing.T) {
	cases := []struct {
		mut  func(*Config)
		want string
	}{
		{func(c *Config) { c.Kernel = "/nonexistent/vmlinux" }, "guest kernel /nonexistent/vmlinux"},
		{func(c *Config) { c.Initrd = "/nonexistent/initrd" }, "guest initrd"},
		{func(c *Config) { c.QEMUPath = "/nonexistent/qemu" }, "hypervisor binary"},
		{func(c *Config) { c.MachineType = "pc" }, "machine type"},
		{func(c *Config) { c.VCPUs = 0 }, "vcpus"},
		{func(c *Config) { c.MemoryMiB = 1 }, "memory"},
		{func(c *Config) { c.Accelerator = "hvf" }, "accelerator"},
		{func(c *Config) { c.Transport = "tcp" }, "transport"},
	}
	for _, tc := range cases {
		c := testConfig(t)
		tc.mut(c)
		if _, err := NewQEMU(*c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error naming %q, got %v", tc.want, err)
		}
	}
}

func TestResolveAccel(t *testing.T) {
	if a, _, err := resolveAccel(AccelTCG); err != nil || a != AccelTCG {
		t.Fatalf("tcg: %v %v", a, err)
	}
	a, why, err := resolveAccel(AccelAuto)
	if err != nil || why == "" {
		t.Fatalf("auto: %v %q %v", a, why, err)
	}
	hw, _ := HardwareKVM()
	if hw != (a == AccelKVM) {
		t.Fatalf("auto chose %s with hardware KVM %v", a, hw)
	}
}

func TestTailBufferKeepsTheEnd(t *testing.T) {
	b := newTailBuffer(8)
	b.Write([]byte("0123456789"))
	b.Write([]byte("ab"))
	if got := b.String(); got != "456789ab" {
		t.Fatalf("tail %q", got)
	}
}
