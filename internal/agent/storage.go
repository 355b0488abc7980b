package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// mounter performs the guest-side filesystem work the host asks for.
type mounter interface {
	mount(st *agentapi.Storage) error
	sethostname(name string) error
	writeDNS(servers []string) error
	sysctl(key, value string) error
	sync()
}

// guestMounter is the real mounter.
type guestMounter struct {
	// mu guards mounted (mount point → "driver source").
	mu      sync.Mutex
	mounted map[string]string
}

var _ mounter = (*guestMounter)(nil)

func newGuestMounter() *guestMounter { return &guestMounter{mounted: map[string]string{}} }

// mountArgs turns a storage request into mount(2) arguments.
func mountArgs(st *agentapi.Storage) (source, fstype string, flags uintptr, data string, err error) {
	if !filepath.IsAbs(st.MountPoint) || filepath.Clean(st.MountPoint) != st.MountPoint {
		return "", "", 0, "", fmt.Errorf("mount point %q must be a clean absolute path", st.MountPoint)
	}
	var opts []string
	for _, o := range st.Options {
		switch o {
		case "ro":
			flags |= unix.MS_RDONLY
		case "nosuid":
			flags |= unix.MS_NOSUID
		case "nodev":
			flags |= unix.MS_NODEV
		case "noexec":
			flags |= unix.MS_NOEXEC
		default:
			if strings.ContainsAny(o, ",\x00") {
				return "", "", 0, "", fmt.Errorf("bad mount option %q", o)
			}
			opts = append(opts, o)
		}
	}
	switch st.Driver {
	case "virtiofs":
		source, fstype = st.Source, "virtiofs"
	case "9p":
		source, fstype = st.Source, "9p"
		opts = append([]string{"trans=virtio", "version=9p2000.L", "msize=524288", "cache=mmap"}, opts...)
	case "tmpfs":
		source, fstype = "tmpfs", "tmpfs"
	case "bind":
		if !filepath.IsAbs(st.Source) {
			return "", "", 0, "", fmt.Errorf("bind source %q must be absolute", st.Source)
		}
		source, flags = st.Source, flags|unix.MS_BIND|unix.MS_REC
	default:
		return "", "", 0, "", fmt.Errorf("unknown storage driver %q (want virtiofs, 9p, tmpfs or bind)", st.Driver)
	}
	if source == "" {
		return "", "", 0, "", fmt.Errorf("storage source is empty")
	}
	return source, fstype, flags, strings.Join(opts, ","), nil
}

func (m *guestMounter) mount(st *agentapi.Storage) error {
	source, fstype, flags, data, err := mountArgs(st)
	if err != nil {
		return err
	}
	key := st.Driver + " " + st.Source
	m.mu.Lock()
	defer m.mu.Unlock()
	if prev, ok := m.mounted[st.MountPoint]; ok {
		if prev == key {
			return nil // the same share asked for twice: already there
		}
		return fmt.Errorf("%s is already used by %s", st.MountPoint, prev)
	}
	if err := os.MkdirAll(st.MountPoint, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(source, st.MountPoint, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s (%s) on %s: %w", source, fstype, st.MountPoint, err)
	}
	m.mounted[st.MountPoint] = key
	return nil
}

func (m *guestMounter) sethostname(name string) error {
	if len(name) > 64 {
		return fmt.Errorf("hostname longer than 64 bytes")
	}
	return unix.Sethostname([]byte(name))
}

func (m *guestMounter) writeDNS(servers []string) error {
	if len(servers) == 0 {
		return nil
	}
	var b strings.Builder
	for _, s := range servers {
		if strings.ContainsAny(s, "\n\x00") {
			return fmt.Errorf("bad DNS entry %q", s)
		}
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	return os.WriteFile("/etc/resolv.conf", []byte(b.String()), 0o644)
}

func (m *guestMounter) sync() { unix.Sync() }

func (m *guestMounter) sysctl(key, value string) error {
	p, err := sysctlPath(key)
	if err != nil {
		return err
	}
	return os.WriteFile(p, []byte(value), 0)
}
