package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The pod's share has two views of one tree (Kata's layout):
//
//	<state>/mounts  host-only: the shim creates directories and mounts
//	                rootfs and volumes here; the guest never sees it.
//	<state>/shared  a read-only bind of mounts with slave propagation:
//	                what virtiofsd or 9p export. Mounts made in mounts
//	                appear here with their own flags (a rw rootfs stays
//	                writable) but the directories between them (the
//	                skeleton) refuse every create, rename, unlink and link.
//
// So the guest cannot plant a symlink where the shim will mount next
// (Kata's CVE-2020-2026). As a second wall, every target is created
// relative to a directory fd, without following any link, never reusing an
// existing entry and never crossing into a mount the guest can write.
const (
	hostTreeName = "mounts"
	exportName   = "shared"
)

// resolveBeneath keeps a lookup inside the skeleton: no "..", no symlink,
// no magic link, no crossing into a mount (a rootfs or volume, which the
// guest can write).
const resolveBeneath = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// Target is a mount point the sandbox created in the host-only tree. It is
// held by fds, so nothing that happens to the path afterwards can redirect
// a mount made through it.
type Target struct {
	// Dir is the parent directory (O_PATH); Name the entry created in it.
	Dir  *os.File
	Name string
	// Entry is the created directory or file itself (O_PATH).
	Entry *os.File
	// Path is for messages and logs only.
	Path string
}

// Close releases the target's fds (the mount, once made, stays).
func (t Target) Close() {
	if t.Entry != nil {
		t.Entry.Close()
	}
	if t.Dir != nil {
		t.Dir.Close()
	}
}

// skeleton makes targets beneath the host-only tree.
type skeleton struct {
	root *os.File // O_PATH directory fd of <state>/mounts
	path string
}

func openSkeleton(path string) (*skeleton, error) {
	fd, err := unix.Open(path, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open share tree %s: %w", path, err)
	}
	return &skeleton{root: os.NewFile(uintptr(fd), path), path: path}, nil
}

func (s *skeleton) close() {
	if s != nil && s.root != nil {
		s.root.Close()
	}
}

// checkName refuses anything but one plain path component.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("share entry %q: not a plain name", name)
	}
	return nil
}

// openDir opens rel (a directory beneath the root, "" for the root itself).
func (s *skeleton) openDir(rel string) (*os.File, error) {
	if rel == "" {
		rel = "."
	}
	fd, err := unix.Openat2(int(s.root.Fd()), rel, &unix.OpenHow{
		Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveBeneath,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s beneath the share tree: %w", filepath.Join(s.path, rel), err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(s.path, rel)), nil
}

// create makes a new entry name in directory parent (relative to the root):
// a directory, or an empty file when dir is false. An entry that exists
// already (whatever it is: a link, a file, a directory) is an error.
func (s *skeleton) create(parent, name string, dir bool) (Target, error) {
	if err := checkName(name); err != nil {
		return Target{}, err
	}
	d, err := s.openDir(parent)
	if err != nil {
		return Target{}, err
	}
	path := filepath.Join(s.path, parent, name)
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolveBeneath}
	if dir {
		err = unix.Mkdirat(int(d.Fd()), name, 0o755)
		how.Flags |= unix.O_DIRECTORY
	} else {
		var fd int
		fd, err = unix.Openat2(int(d.Fd()), name, &unix.OpenHow{
			Flags: unix.O_CREAT | unix.O_EXCL | unix.O_WRONLY | unix.O_NOFOLLOW | unix.O_CLOEXEC, Mode: 0o644, Resolve: resolveBeneath,
		})
		if err == nil {
			unix.Close(fd)
		}
	}
	if errors.Is(err, unix.EEXIST) {
		d.Close()
		return Target{}, fmt.Errorf("mount target %s exists already: refusing to reuse it: %w", path, err)
	}
	if err != nil {
		d.Close()
		return Target{}, fmt.Errorf("create mount target %s: %w", path, err)
	}
	fd, err := unix.Openat2(int(d.Fd()), name, how)
	if err != nil {
		d.Close()
		return Target{}, fmt.Errorf("open mount target %s: %w", path, err)
	}
	return Target{Dir: d, Name: name, Entry: os.NewFile(uintptr(fd), path), Path: path}, nil
}

// mkdir makes one new directory and returns nothing to hold: for the
// skeleton's own levels (a container's directory), which are never mount
// points.
func (s *skeleton) mkdir(parent, name string) error {
	t, err := s.create(parent, name, true)
	if err != nil {
		return err
	}
	t.Close()
	return nil
}
