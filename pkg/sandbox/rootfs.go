package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/containerd/mount"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// containerShare is the host directory of one container in the host-only
// tree: rootfs/ and one entry per shared volume under mounts/.
func (s *Sandbox) containerShare(id string) string { return filepath.Join(s.tree, id) }

func guestContainerShare(id string) string { return guestSharedRoot + "/" + id }

// HostFS makes the host mounts a pod needs. It is an interface so the
// sandbox's logic can be unit tested without root.
type HostFS interface {
	// PrepareState caps the pod's state directory and builds its share:
	// the host-only tree and its read-only export (skeleton.go).
	PrepareState(stateDir string) error
	// MountAll mounts containerd's rootfs mounts on target.
	MountAll(mounts []mount.Mount, target Target) error
	// Bind bind-mounts source on target (recursively) with the access asked.
	Bind(source string, target Target, a Access) error
	// IsTmpfs reports whether path is on a tmpfs.
	IsTmpfs(path string) bool
	// HasSubmounts reports whether anything is mounted below path.
	HasSubmounts(path string) (bool, error)
}

// Access is how a shared bind may be written.
type Access int

const (
	// ReadWrite leaves the bind writable.
	ReadWrite Access = iota
	// ReadOnly is OCI's "ro": the bind is read-only at its top only, what
	// is mounted below keeps its own flags.
	ReadOnly
	// ReadOnlyRecursive is OCI's "rro": every mount in the bind is
	// read-only.
	ReadOnlyRecursive
)

// accessOf reads a bind's access from its OCI options (the last word wins,
// as in runc).
func accessOf(opts []string) Access {
	a := ReadWrite
	for _, o := range opts {
		switch o {
		case "ro":
			a = ReadOnly
		case "rro":
			a = ReadOnlyRecursive
		case "rw":
			a = ReadWrite
		}
	}
	return a
}

// guestEphemeralRoot holds the guest tmpfs volumes of a pod.
const guestEphemeralRoot = "/run/kata-go/ephemeral"

// ephemeral reports whether a bind mount is pod-scratch memory that should
// live in the guest rather than be shared from the host: a Kubernetes
// emptyDir of medium Memory, or the pod's /dev/shm from CRI. Both are empty
// host tmpfs directories; in the guest they become one tmpfs per source,
// shared by the pod's containers, with real shared-memory semantics.
// Other tmpfs sources (secrets, config maps) have content and are shared.
func ephemeral(fs HostFS, m specs.Mount) bool {
	emptyDir := strings.Contains(m.Source, "/kubernetes.io~empty-dir/")
	shm := m.Destination == "/dev/shm" && filepath.Base(m.Source) == "shm"
	return (emptyDir || shm) && fs.IsTmpfs(m.Source)
}

// guestEphemeralPath is the guest tmpfs that stands for a host source.
func guestEphemeralPath(source string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(source)))
	return guestEphemeralRoot + "/" + hex.EncodeToString(sum[:8])
}

// mountRootfs puts the container's root filesystem at <tree>/<id>/rootfs:
// the mounts containerd handed over (a snapshot), or a bind of the bundle's
// rootfs directory when there are none.
func mountRootfs(fs HostFS, skel *skeleton, id, bundle string, rootfs []mount.Mount, root *specs.Root) error {
	if len(rootfs) == 0 && (root == nil || root.Path == "") {
		return fmt.Errorf("no rootfs mounts and no root.path in the spec")
	}
	target, err := skel.create(id, "rootfs", true)
	if err != nil {
		return err
	}
	defer target.Close()
	if len(rootfs) > 0 {
		if err := fs.MountAll(rootfs, target); err != nil {
			return fmt.Errorf("mount rootfs: %w", err)
		}
		return nil
	}
	src := root.Path
	if !filepath.IsAbs(src) {
		src = filepath.Join(bundle, src)
	}
	if err := fs.Bind(src, target, ReadWrite); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", src, err)
	}
	return nil
}

// isBind reports whether an OCI mount is a bind mount of a host path.
func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// shareVolumes binds each host path the spec mounts into the container
// under <tree>/<id>/mounts/, and returns the spec's mounts rewritten to
// guest paths. Only these paths, never their host parents, become visible
// to the guest. The host source is cloned without following a final
// symlink, and each target is new (skeleton.create).
func shareVolumes(fs HostFS, skel *skeleton, id string, mounts []specs.Mount) ([]specs.Mount, []*agentapi.Storage, error) {
	out := make([]specs.Mount, 0, len(mounts))
	var storages []*agentapi.Storage
	madeDir := false
	for i, m := range mounts {
		if !isBind(m) {
			out = append(out, m)
			continue
		}
		if ephemeral(fs, m) {
			p := guestEphemeralPath(m.Source)
			storages = append(storages, &agentapi.Storage{Driver: "tmpfs", Source: "tmpfs", MountPoint: p, Options: []string{"nosuid", "nodev", "mode=1777"}})
			m.Source, m.Type = p, "bind"
			out = append(out, m)
			continue
		}
		if !filepath.IsAbs(m.Source) {
			return nil, nil, fmt.Errorf("bind mount %s: source %q must be absolute", m.Destination, m.Source)
		}
		fi, err := os.Lstat(m.Source)
		if err != nil {
			return nil, nil, fmt.Errorf("bind mount %s: %w", m.Destination, err)
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return nil, nil, fmt.Errorf("bind mount %s: source %s is a symlink", m.Destination, m.Source)
		}
		if !madeDir {
			if err := skel.mkdir(id, "mounts"); err != nil {
				return nil, nil, err
			}
			madeDir = true
		}
		name := strconv.Itoa(i) + "-" + strings.ReplaceAll(strings.Trim(m.Destination, "/"), "/", "_")
		target, err := skel.create(id+"/mounts", name, fi.IsDir())
		if err != nil {
			return nil, nil, fmt.Errorf("bind mount %s: %w", m.Destination, err)
		}
		access := accessOf(m.Options)
		err = fs.Bind(m.Source, target, access)
		target.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("share %s: %w", m.Source, err)
		}
		// The guest sees a shared volume as one filesystem, so a guest
		// read-only bind also covers what is mounted below the source:
		// right for "rro" (kept, the guest enforces it too), wrong for a
		// plain "ro", which is not recursive. There the host bind
		// (read-only at its top only) enforces it, and the guest binds
		// read-write so the submounts stay writable.
		if access == ReadOnly {
			sub, err := fs.HasSubmounts(m.Source)
			if err != nil {
				return nil, nil, fmt.Errorf("bind mount %s: %w", m.Destination, err)
			}
			if sub {
				m.Options = without(m.Options, "ro")
			}
		}
		m.Source = guestContainerShare(id) + "/mounts/" + name
		m.Type = "bind"
		out = append(out, m)
	}
	return out, storages, nil
}

// without is opts less every o.
func without(opts []string, o string) []string {
	out := make([]string, 0, len(opts))
	for _, x := range opts {
		if x != o {
			out = append(out, x)
		}
	}
	return out
}
