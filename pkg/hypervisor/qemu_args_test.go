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
		"tsc_early_khz=2500000", "quiet", "noapictimer", "tsc=reliable",
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
		"tap,id=net0,fds=4:5,vhost=off", "virtio-net-pci,netdev=net0,mac=02:00:00:00:00:01",
		"readonly=on", "virtio-blk-pci,drive=blk0", "virtio-serial-pci",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %q:\n%s", want, a)
		}
	}
	for _, bad := range []string{"memory-backend", "tsc_early_khz", "quiet", "force-legacy", "noapictimer", "tsc=reliable"} {
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
		{func(c *Config) { c.AgentSecret = []byte("short") }, "agent secret: 5 bytes, want 32"},
	}
	for _, tc := range cases {
		c := testConfig(t)
		tc.mut(c)
		if _, err := NewQEMU(*c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want error naming %q, got %v", tc.want, err)
		}
	}
}

func TestArgsAgentSecretFwCfg(t *testing.T) {
	c := testConfig(t)
	l := &launch{cfg: c, accel: AccelTCG, cpu: "max"}
	a := joined(l.args())
	if strings.Contains(a, "-fw_cfg") || strings.Contains(a, "qemu_fw_cfg") {
		t.Errorf("no secret, yet fw_cfg in args:\n%s", a)
	}
	l.secretPath = "/state,x/agent-secret"
	a = joined(l.args())
	for _, want := range []string{
		"-fw_cfg name=opt/io.kata-go/agent-secret,file=/state,,x/agent-secret",
		"qemu_fw_cfg.ioport=12@0x510:0:1:4",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %q:\n%s", want, a)
		}
	}
}

func TestArgsSandboxAndRunAs(t *testing.T) {
	c := testConfig(t)
	l := &launch{cfg: c, accel: AccelTCG, cpu: "max"}
	a := joined(l.args())
	if !strings.Contains(a, "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny") {
		t.Errorf("root QEMU without the full seccomp filter:\n%s", a)
	}
	if strings.Contains(a, "-runas") {
		t.Errorf("runas without an id:\n%s", a)
	}
	l.runAs = "1879048193:1879048193"
	a = joined(l.args())
	for _, want := range []string{
		"-runas 1879048193:1879048193",
		// QEMU's own setuid at -runas time would hit elevateprivileges=deny.
		"-sandbox on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %q:\n%s", want, a)
		}
	}
}

func TestArgsConsoleIsAPipe(t *testing.T) {
	c := testConfig(t)
	l := &launch{cfg: c, accel: AccelTCG, cpu: "max"}
	a := joined(l.args())
	for _, want := range []string{
		"-add-fd fd=3,set=3,opaque=console", "-chardev file,id=console,path=/dev/fdset/3,append=on", "-serial chardev:console",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("args lack %q:\n%s", want, a)
		}
	}
	if strings.Contains(a, "file:") {
		t.Errorf("QEMU writes a file itself:\n%s", a)
	}
}

func TestRunAsIDIsPerPodAndHigh(t *testing.T) {
	a, err := runAsID("/run/kata-go/pod-a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := runAsID("/run/kata-go/pod-b")
	if err != nil {
		t.Fatal(err)
	}
	if a == b {
		t.Errorf("two pods share uid %d", a)
	}
	for _, id := range []int{a, b} {
		if id < runAsBase || id >= runAsBase+runAsSpan {
			t.Errorf("uid %d outside [%d, %d)", id, runAsBase, runAsBase+runAsSpan)
		}
	}
	if again, _ := runAsID("/run/kata-go/pod-a"); again != a {
		t.Errorf("uid not stable for one state dir: %d then %d", a, again)
	}
}

func TestChooseRunAsKeepsRootFor9P(t *testing.T) {
	c := testConfig(t)
	q, err := NewQEMU(*c)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := q.chooseRunAs([]Device{SharedDir{Tag: "t", HostPath: "/s", Type: SharedFS9P}}); err != nil || r != "" {
		t.Errorf("9p: runas %q, %v; want root", r, err)
	}
	r, err := q.chooseRunAs([]Device{SharedDir{Tag: "t", HostPath: "/s", Type: SharedFSVirtioFS}})
	if err != nil || !strings.Contains(r, ":") {
		t.Errorf("virtio-fs: runas %q, %v; want uid:gid", r, err)
	}
}

func TestWriteSecretIsPrivateAndFresh(t *testing.T) {
	dir := t.TempDir()
	secret := []byte("0123456789abcdef0123456789abcdef")
	p, err := writeSecret(dir, secret)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(p)
	if err != nil || fi.Mode() != 0o600 {
		t.Fatalf("secret file mode %v, %v; want 0600", fi.Mode(), err)
	}
	// A stale file, or a symlink planted where the file goes, is replaced
	// by a new regular file; the symlink's target is never written.
	os.Remove(p)
	target := filepath.Join(dir, "elsewhere")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if _, err := writeSecret(dir, secret); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("secret file after a planted symlink: %v %v", fi, err)
	}
	if _, err := os.Stat(target); err == nil {
		t.Error("symlink target created")
	}
	if b, _ := os.ReadFile(p); string(b) != string(secret) {
		t.Errorf("secret file holds %q", b)
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
