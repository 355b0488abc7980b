package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// warmUpID names the throwaway container a template's agent runs before
// the VM is saved. A pod could use the same id without a clash: the
// container is removed before any host but the template maker connects.
const warmUpID = "kata-go-template-warmup"

// warmUp runs one throwaway container through the same create, start,
// wait and remove as a pod's, so that what the guest does once per boot
// (the kernel's and the Go runtime's lazy set-up on the first namespace,
// cgroup, mount and re-exec, the agent's own first-use allocations) is
// done in the template and saved with it: every clone then starts its
// first container with that work behind it. Under TCG a clone still pays
// for translating the code it runs (QEMU's translation cache is not part
// of a snapshot), but not for code it no longer runs at all.
func (s *service) warmUp(ctx context.Context) (retErr error) {
	began := time.Now()
	root, cleanup, err := s.warmRoot()
	if errors.Is(err, errNoWarmUp) {
		// An initrd without busybox (an operator's own): the template is
		// still good, only its clones' first create is slower.
		Logf("template warm-up skipped: %v", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("warm-up root: %w", err)
	}
	defer func() {
		if err := cleanup(); err != nil && retErr == nil {
			retErr = fmt.Errorf("warm-up root: %w", err)
		}
	}()
	raw, err := json.Marshal(warmSpec(root))
	if err != nil {
		return err
	}
	if _, err := s.CreateContainer(ctx, &agentapi.CreateContainerRequest{ContainerId: warmUpID, OciSpec: raw}); err != nil {
		return err
	}
	defer func() {
		if _, err := s.RemoveContainer(context.Background(), &agentapi.ContainerRequest{ContainerId: warmUpID}); err != nil && retErr == nil {
			retErr = err
		}
	}()
	if _, err := s.StartContainer(ctx, &agentapi.ContainerRequest{ContainerId: warmUpID}); err != nil {
		return err
	}
	st, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{ContainerId: warmUpID})
	if err != nil {
		return err
	}
	if st.Status != 0 || st.Signal != 0 {
		return fmt.Errorf("warm-up container exited with status %d, signal %d", st.Status, st.Signal)
	}
	Logf("template warm-up: a container ran in %v", time.Since(began).Round(time.Millisecond))
	return nil
}

// errNoWarmUp says the guest has nothing to run a warm-up container with.
var errNoWarmUp = errors.New("no warm-up binary in the guest")

// warmBinary is what the warm-up container runs: the initrd's busybox.
const warmBinary = "/bin/busybox"

// warmSpec is the warm-up container: busybox's true with the namespaces,
// mounts and masks containerd's default spec gives a container, so the
// same kernel and libcontainer paths run as for a pod's.
func warmSpec(root string) *specs.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	return &specs.Spec{
		Version: specs.Version,
		Process: &specs.Process{
			Args: []string{warmBinary, "true"},
			Env:  []string{"PATH=/bin"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			Rlimits:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
			NoNewPrivileges: true,
		},
		Root:     &specs.Root{Path: root},
		Hostname: "warmup",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
			{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace}, {Type: specs.MountNamespace},
			},
			MaskedPaths:   []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
}

// guestWarmRoot makes the warm-up container's root in the guest: a tmpfs
// holding only the initrd's static busybox, bind-mounted (not copied, so
// the template saves no extra pages). cleanup unmounts and removes it all.
func guestWarmRoot() (string, func() error, error) {
	const dir = "/run/kata-go-warmup"
	if _, err := os.Stat(warmBinary); err != nil {
		return "", nil, fmt.Errorf("%w: %w", errNoWarmUp, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, warmBinary)
	cleanup := func() error {
		_ = unix.Unmount(bin, unix.MNT_DETACH)
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && err != unix.EINVAL {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		return os.Remove(dir)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755,size=1m"); err != nil {
		_ = os.Remove(dir)
		return "", nil, fmt.Errorf("mount tmpfs on %s: %w", dir, err)
	}
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		return "", nil, errors.Join(err, cleanup())
	}
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		return "", nil, errors.Join(err, cleanup())
	}
	if err := unix.Mount(warmBinary, bin, "", unix.MS_BIND, ""); err != nil {
		return "", nil, errors.Join(fmt.Errorf("bind %s: %w", warmBinary, err), cleanup())
	}
	return dir, cleanup, nil
}
