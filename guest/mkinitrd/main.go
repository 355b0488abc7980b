// Command mkinitrd writes the guest initrd: an uncompressed newc cpio with
// the static agent as /init, the few nodes the kernel needs before the
// agent mounts devtmpfs, and Debian's static busybox as /bin/busybox (the
// operator's debug shell, served only when the host allows it). Output is
// byte-for-byte reproducible.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
)

type entry struct {
	name        string
	mode        uint32
	major, minr uint32
	data        []byte
}

const (
	modeDir  = 0o040000
	modeFile = 0o100000
	modeChar = 0o020000
)

func main() {
	agent := flag.String("agent", "", "static agent binary to install as /init")
	out := flag.String("o", "", "output file")
	busybox := flag.String("busybox", "/bin/busybox", "static busybox for the debug shell (Debian: apt-get install busybox-static)")
	flag.Parse()
	if *agent == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "usage: mkinitrd -agent PATH -o OUT")
		os.Exit(2)
	}
	bin, err := os.ReadFile(*agent)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkinitrd:", err)
		os.Exit(1)
	}
	bb, err := os.ReadFile(*busybox)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkinitrd: the debug shell's busybox (apt-get install busybox-static):", err)
		os.Exit(1)
	}
	entries := []entry{
		{name: "bin", mode: modeDir | 0o755},
		{name: "bin/busybox", mode: modeFile | 0o755, data: bb},
		{name: "dev", mode: modeDir | 0o755},
		{name: "dev/console", mode: modeChar | 0o600, major: 5, minr: 1},
		{name: "etc", mode: modeDir | 0o755},
		{name: "proc", mode: modeDir | 0o555},
		{name: "run", mode: modeDir | 0o755},
		{name: "sys", mode: modeDir | 0o555},
		{name: "tmp", mode: modeDir | 0o1777},
		{name: "init", mode: modeFile | 0o755, data: bin},
	}
	f, err := os.Create(*out + ".tmp")
	if err == nil {
		err = write(f, entries)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err == nil {
		err = os.Rename(*out+".tmp", *out)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkinitrd:", err)
		os.Exit(1)
	}
}

func write(w io.Writer, entries []entry) error {
	ino := uint32(1)
	for _, e := range append(entries, entry{name: "TRAILER!!!"}) {
		nlink := uint32(1)
		if e.mode&modeDir != 0 {
			nlink = 2
		}
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minr, len(e.name)+1, 0)
		ino++
		if _, err := io.WriteString(w, hdr+e.name+"\x00"); err != nil {
			return err
		}
		if err := pad(w, len(hdr)+len(e.name)+1); err != nil {
			return err
		}
		if _, err := w.Write(e.data); err != nil {
			return err
		}
		if err := pad(w, len(e.data)); err != nil {
			return err
		}
	}
	return nil
}

func pad(w io.Writer, n int) error {
	if r := n % 4; r != 0 {
		_, err := w.Write(make([]byte, 4-r))
		return err
	}
	return nil
}
