package ociimage

import (
	"archive/tar"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Busybox writes an image archive (for `ctr images import`) named ref,
// holding /bin/busybox from the host and a link per applet.
func Busybox(w io.Writer, ref, busybox string) error {
	return BusyboxWithCmd(w, ref, busybox, []string{"sh"})
}

// BusyboxWithCmd is Busybox with a default command (e.g. a CRI pause image).
func BusyboxWithCmd(w io.Writer, ref, busybox string, cmd []string) error {
	entries, err := BusyboxEntries(busybox, false)
	if err != nil {
		return err
	}
	entries = append(entries,
		File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")),
		File("etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n")))
	img, err := Build(ref, Config{Cmd: cmd}, entries)
	if err != nil {
		return err
	}
	return img.WriteArchive(w)
}

// BusyboxEntries is a root skeleton with busybox at /bin/busybox and one
// link per applet in /bin: symlinks, or hard links when hard is set (some
// tools look at the applet's own inode, as the upstream test images have).
func BusyboxEntries(busybox string, hard bool) ([]Entry, error) {
	bin, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("read busybox: %w", err)
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --list: %w (is it busybox?)", busybox, err)
	}
	var entries []Entry
	for _, d := range []string{"bin", "dev", "etc", "proc", "root", "sys", "var", "usr", "usr/bin"} {
		entries = append(entries, Dir(d, 0o755))
	}
	entries = append(entries, Dir("tmp", 0o1777), File("bin/busybox", 0o755, bin))
	for _, name := range strings.Fields(string(out)) {
		if name == "busybox" {
			continue
		}
		if hard {
			// A hard link's mode is the file's: unpackers chmod the shared
			// inode to it, so it must not be zero.
			entries = append(entries, Entry{Name: "bin/" + name, Type: tar.TypeLink, Link: "bin/busybox", Mode: 0o755})
		} else {
			entries = append(entries, Entry{Name: "bin/" + name, Type: tar.TypeSymlink, Link: "busybox", Mode: 0o777})
		}
	}
	return entries, nil
}
