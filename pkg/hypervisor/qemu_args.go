package hypervisor

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kata-go/kata-go/pkg/agentapi/channel"
)

// Files in the VM's state directory.
const (
	qmpSocket   = "qmp.sock"
	agentSocket = "agent.sock"
	consoleFile = "console.log"
	// secretFile carries the agent secret to QEMU's fw_cfg; it exists only
	// while QEMU starts.
	secretFile = "agent-secret"
)

// consoleFD is the fd number, in QEMU, of the console pipe's write end: the
// first of cmd.ExtraFiles. Tap fds follow it.
const consoleFD = 3

// fwCfgIOPort tells the guest kernel where the fw_cfg device is. Without
// ACPI (our kernel has none, and microvm runs acpi=off) nothing else does.
// QEMU puts fw_cfg at the x86 standard place on both microvm and q35:
// selector 0x510, data 0x511, DMA address 0x514-0x51b, 12 ports in all
// (fw_cfg_init_io_dma(FW_CFG_IO_BASE, FW_CFG_IO_BASE + 4)); the format is
// <size>@<base>:<ctrl_off>:<data_off>:<dma_off> from the kernel's
// drivers/firmware/qemu_fw_cfg.c, which names this exact value as the x86
// default. The location is not secret; the file content is. Measured with
// our kernel: without it neither machine shows by_name/opt in the guest;
// with it both read the secret's 32 bytes back.
const fwCfgIOPort = "qemu_fw_cfg.ioport=12@0x510:0:1:4"

// sandboxOpt is QEMU's seccomp filter: no obsolete syscalls, no fork/exec,
// no scheduler/affinity control, and no set*id. When QEMU drops root itself
// (-runas) its own setgid/setuid comes after the filter is installed, and
// QEMU 7.2 then dies of SIGSYS (measured: "Bad system call"), so set*id is
// allowed there; after the drop real, effective and saved ids are all the
// unprivileged one and no capability is left, so there is nothing to
// elevate to.
func sandboxOpt(runAs bool) string {
	elevate := "deny"
	if runAs {
		elevate = "allow"
	}
	return "on,obsolete=deny,elevateprivileges=" + elevate + ",spawn=deny,resourcecontrol=deny"
}

func virtiofsdSocket(i int) string { return fmt.Sprintf("virtiofsd-%d.sock", i) }

// launch is everything the command line depends on, resolved.
type launch struct {
	cfg      *Config
	accel    Accelerator
	cpu      string
	tscKHz   int
	devices  []Device
	vsockCID uint32
	// secretPath is the agent secret's file for fw_cfg; "" for none.
	secretPath string
	// runAs is the "uid:gid" QEMU drops to once started; "" keeps root.
	runAs string
}

// kernelParams returns the guest command line.
func (l *launch) kernelParams() string {
	// no_timer_check skips the IO-APIC timer sanity loop, pointless in a VM
	// (about 20-50 ms of boot under TCG).
	p := []string{"console=ttyS0", "reboot=t", "panic=-1", "random.trust_cpu=on", "8250.nr_uarts=1", "no_timer_check"}
	if !l.cfg.Debug {
		p = append(p, "quiet")
	}
	if l.accel == AccelTCG {
		if l.tscKHz > 0 {
			p = append(p, "tsc_early_khz="+strconv.Itoa(l.tscKHz))
		}
		// The emulated LAPIC timer's calibration costs ~0.2 s of boot under
		// TCG (935 -> 744 ms measured); the PIT serves instead. Never under KVM.
		p = append(p, "noapictimer")
		// TCG's guest TSC is the host's (constant rate) and is the guest's
		// clocksource; without this the kernel's watchdog checks it against
		// jiffies, which lose ticks whenever TCG is busy, marks it unstable
		// and falls back to jiffies: the wall clock then loses seconds a
		// minute (seen 2026-12-02), beyond what the shim's resync can hide.
		p = append(p, "tsc=reliable")
	}
	if l.secretPath != "" {
		p = append(p, fwCfgIOPort)
	}
	return strings.Join(append(p, l.cfg.KernelParams...), " ")
}

// bus picks the device model suffix of the machine's virtio transport.
func (l *launch) dev(base string) string {
	if l.cfg.MachineType == "microvm" {
		return base + "-device"
	}
	return base + "-pci"
}

func (l *launch) needsSharedMemory() bool {
	for _, d := range l.devices {
		if sd, ok := d.(SharedDir); ok && sd.Type == SharedFSVirtioFS {
			return true
		}
	}
	return false
}

// args builds QEMU's command line. Fd 3 is the console pipe; fds of tap
// devices are numbered from 4 in device order, matching the ExtraFiles the
// caller passes.
func (l *launch) args() []string {
	c := l.cfg
	dir := c.StateDir
	machine := c.MachineType
	if machine == "microvm" {
		// acpi=off makes QEMU list the virtio-mmio devices on the kernel command line.
		machine += ",acpi=off,x-option-roms=off"
	}
	shared := l.needsSharedMemory()
	tmpl := c.Template.Mode != NoTemplate
	if shared || tmpl {
		machine += ",memory-backend=mem"
	}
	accel := string(l.accel)
	if l.accel == AccelTCG && c.TBSizeMiB > 0 {
		accel += ",tb-size=" + strconv.Itoa(c.TBSizeMiB)
	}
	a := []string{
		"-name", "kata-go-" + filepath.Base(dir),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-machine", machine,
		"-accel", accel,
		"-cpu", l.cpu,
		"-smp", strconv.Itoa(c.VCPUs),
		"-m", strconv.Itoa(c.MemoryMiB) + "M",
		// The console goes to a pipe the host drains into a capped file: a
		// file QEMU wrote itself would grow for as long as the guest writes.
		// The fdset form is QEMU's own way to hand it an open fd and needs
		// no /proc; the chardev opens it O_WRONLY like the pipe's write end.
		// append=on: without it the chardev asks for O_TRUNC, which QEMU
		// emulates on a dup'd fd with ftruncate(), and that fails (EINVAL)
		// on a pipe (measured on 7.2).
		"-add-fd", fmt.Sprintf("fd=%d,set=%d,opaque=console", consoleFD, consoleFD),
		"-chardev", fmt.Sprintf("file,id=console,path=/dev/fdset/%d,append=on", consoleFD),
		"-serial", "chardev:console",
		"-qmp", "unix:" + filepath.Join(dir, qmpSocket) + ",server=on,wait=off",
		"-sandbox", sandboxOpt(l.runAs != ""),
	}
	if c.Template.Mode == FromTemplate {
		// The guest is already booted: no kernel to load (QEMU answers
		// QMP sooner without), and the device state comes over QMP.
		a = append(a, "-incoming", "defer")
	} else {
		a = append(a, "-kernel", c.Kernel, "-initrd", c.Initrd, "-append", l.kernelParams())
	}
	if l.runAs != "" {
		// QEMU opens everything it needs (sockets, memfd, kernel, initrd,
		// fw_cfg file, /dev/kvm) as root, then drops to this uid:gid and
		// clears its supplementary groups.
		a = append(a, "-runas", l.runAs)
	}
	if l.secretPath != "" && c.Template.Mode != FromTemplate {
		// A comma in the path would end the option's value; QEMU reads ",,"
		// as one comma.
		a = append(a, "-fw_cfg", "name="+channel.SecretFwCfgName+",file="+strings.ReplaceAll(l.secretPath, ",", ",,"))
	}
	switch {
	case tmpl:
		// A template's RAM is a file: shared while the template is made,
		// so the file ends up holding the guest's memory; private in a
		// clone, so the clone's writes stay in its own pages.
		share := "on"
		if c.Template.Mode == FromTemplate {
			share = "off"
		}
		a = append(a, "-object", fmt.Sprintf("memory-backend-file,id=mem,size=%dM,mem-path=%s,share=%s",
			c.MemoryMiB, strings.ReplaceAll(c.Template.MemoryPath, ",", ",,"), share))
	case shared:
		// virtio-fs needs guest RAM the daemon can map; memfd is only
		// allocated as the guest touches it.
		a = append(a, "-object", fmt.Sprintf("memory-backend-memfd,id=mem,size=%dM,share=on", c.MemoryMiB))
	}
	if c.MachineType == "microvm" {
		a = append(a, "-global", "virtio-mmio.force-legacy=off")
	}
	// Free page reporting: pages the guest frees (the unpacked initrd, exited
	// containers) go back to the host instead of staying resident. Never a
	// balloon with a template: QEMU gives back a page of file-backed RAM by
	// punching a hole in the file, and a clone's file is the template every
	// other clone maps (measured: the template's memory file shrank while a
	// clone with free page reporting ran). A guest can also inflate a
	// balloon unasked, so a hostile clone could zero pages under its
	// siblings; without the device no guest request discards RAM.
	if !tmpl {
		a = append(a, "-device", l.dev("virtio-balloon")+",free-page-reporting=on")
	}
	switch c.Transport {
	case TransportVsock:
		a = append(a, "-device", fmt.Sprintf("%s,guest-cid=%d", l.dev("vhost-vsock"), l.vsockCID))
	default:
		a = append(a,
			"-device", l.dev("virtio-serial")+",id=serial0",
			"-chardev", "socket,id=agent,path="+filepath.Join(dir, agentSocket)+",server=on,wait=off",
			"-device", "virtserialport,chardev=agent,name="+channel.SerialPortName)
	}
	fd := consoleFD + 1
	nfs, nnet, nblk := 0, 0, 0
	for _, d := range l.devices {
		switch d := d.(type) {
		case SharedDir:
			if d.Type == SharedFSVirtioFS {
				id := fmt.Sprintf("fs%d", nfs)
				a = append(a,
					"-chardev", "socket,id="+id+",path="+filepath.Join(dir, virtiofsdSocket(nfs)),
					"-device", fmt.Sprintf("%s,chardev=%s,tag=%s,queue-size=1024", l.dev("vhost-user-fs"), id, d.Tag))
			} else {
				id := fmt.Sprintf("fsdev%d", nfs)
				a = append(a,
					"-fsdev", fmt.Sprintf("local,id=%s,path=%s,security_model=none,multidevs=remap", id, d.HostPath),
					"-device", fmt.Sprintf("%s,fsdev=%s,mount_tag=%s", l.dev("virtio-9p"), id, d.Tag))
			}
			nfs++
		case NetTap:
			fds := make([]string, len(d.FDs))
			for i := range d.FDs {
				fds[i] = strconv.Itoa(fd)
				fd++
			}
			id := fmt.Sprintf("net%d", nnet)
			backend := fmt.Sprintf("tap,id=%s,fds=%s,vhost=off", id, strings.Join(fds, ":"))
			if len(fds) == 0 {
				// A template's NIC: the device its clones will have, with
				// a backend that goes nowhere (a hub port alone on its hub).
				backend = fmt.Sprintf("hubport,id=%s,hubid=%d", id, nnet)
			}
			a = append(a,
				"-netdev", backend,
				"-device", fmt.Sprintf("%s,netdev=%s,mac=%s", l.dev("virtio-net"), id, d.MAC))
			nnet++
		case Block:
			id := fmt.Sprintf("blk%d", nblk)
			ro := "off"
			if d.ReadOnly {
				ro = "on"
			}
			a = append(a,
				"-drive", fmt.Sprintf("file=%s,if=none,id=%s,format=raw,readonly=%s", d.Path, id, ro),
				"-device", fmt.Sprintf("%s,drive=%s", l.dev("virtio-blk"), id))
			nblk++
		}
	}
	return a
}
