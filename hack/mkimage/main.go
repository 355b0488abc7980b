// Command mkimage writes a busybox OCI image archive for `ctr images import`.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/kata-go/kata-go/internal/ociimage"
)

func main() {
	ref := flag.String("ref", "docker.io/library/busybox:kata-go", "image reference")
	bb := flag.String("busybox", "/bin/busybox", "static busybox binary")
	out := flag.String("o", "busybox.tar", "output archive")
	flag.Parse()
	f, err := os.Create(*out)
	if err == nil {
		err = ociimage.Busybox(f, *ref, *bb)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}
