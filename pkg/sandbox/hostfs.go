package sandbox

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/containerd/mount"
	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/internal/mountinfo"
)

// stateDirSize caps a pod's state directory (console log, sockets, state
// file and the share's skeleton): it is a tmpfs of its own, so nothing a
// guest makes the host write there can grow past it.
const (
	stateDirSize   = 16 << 20
	stateDirInodes = 16384
)

// realFS is the host's mount table.
type realFS struct{}

var _ HostFS = realFS{}

func (realFS) PrepareState(dir string) error {
	opts := "size=" + strconv.Itoa(stateDirSize) + ",nr_inodes=" + strconv.Itoa(stateDirInodes) + ",mode=0700"
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, opts); err != nil {
		return fmt.Errorf("mount the state tmpfs on %s: %w", dir, err)
	}
	// Private: the pod's mounts must not propagate to wherever the parent
	// (often a shared /run) propagates.
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", dir, err)
	}
	tree := filepath.Join(dir, hostTreeName)
	export := filepath.Join(dir, exportName)
	for _, d := range []string{tree, export} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("share: %w", err)
		}
	}
	steps := []struct {
		what         string
		src, dst, fs string
		flags        uintptr
	}{
		// The tree must be a mount of its own in a fresh peer group, so
		// what is mounted in it propagates to the export.
		{"bind the host tree", tree, tree, "", unix.MS_BIND},
		{"make the host tree shared", "", tree, "", unix.MS_SHARED},
		{"bind the export", tree, export, "", unix.MS_BIND},
		// Slave: mounts flow from the tree to the export, never back.
		{"make the export a slave", "", export, "", unix.MS_SLAVE},
		{"make the export read-only", "", export, "", unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
	}
	for _, st := range steps {
		if err := unix.Mount(st.src, st.dst, st.fs, st.flags, ""); err != nil {
			return fmt.Errorf("share: %s (%s): %w", st.what, st.dst, err)
		}
	}
	return nil
}

// MountAll mounts through the target's parent fd: the path below names
// exactly the directory the skeleton created, whatever the path did since.
func (realFS) MountAll(mounts []mount.Mount, t Target) error {
	return mount.All(mounts, fmt.Sprintf("/proc/self/fd/%d/%s", t.Dir.Fd(), t.Name))
}

// Bind clones source (not following a final symlink), sets its access on
// the detached clone, and attaches it to the target's fd: no path is
// resolved after the target was created, and the bind is never writable,
// not even for an instant, when it should not be.
func (realFS) Bind(source string, t Target, a Access) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE|unix.AT_SYMLINK_NOFOLLOW)
	if err != nil {
		return fmt.Errorf("clone %s: %w", source, err)
	}
	defer unix.Close(fd)
	switch a {
	case ReadOnly:
		// The top mount only: what is mounted below keeps its flags.
		err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
	case ReadOnlyRecursive:
		err = unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY})
	}
	if err != nil {
		return fmt.Errorf("make %s read-only: %w", source, err)
	}
	if err := unix.MoveMount(fd, "", int(t.Entry.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach %s on %s: %w", source, t.Path, err)
	}
	return nil
}

func (realFS) HasSubmounts(path string) (bool, error) {
	mps, err := mountinfo.Under(filepath.Clean(path))
	if err != nil {
		return false, err
	}
	for _, m := range mps {
		if m != filepath.Clean(path) {
			return true, nil
		}
	}
	return false, nil
}

func (realFS) IsTmpfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.TMPFS_MAGIC
}
