// Command vsockdial is a hostile container's probe: it tries to open the
// agent's vsock port and reports whether it got through.
package main

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Println("usage: vsockdial CID PORT")
		os.Exit(2)
	}
	cid, _ := strconv.ParseUint(os.Args[1], 10, 32)
	port, _ := strconv.ParseUint(os.Args[2], 10, 32)
	fd, err := unix.Socket(unix.AF_VSOCK, unix.SOCK_STREAM, 0)
	if err != nil {
		fmt.Printf("refused: socket: %v\n", err)
		os.Exit(1)
	}
	if err := unix.Connect(fd, &unix.SockaddrVM{CID: uint32(cid), Port: uint32(port)}); err != nil {
		fmt.Printf("refused: connect %d:%d: %v\n", cid, port, err)
		os.Exit(1)
	}
	// Connected: if the agent speaks, it would greet first.
	buf := make([]byte, 64)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2})
	n, _ := unix.Read(fd, buf)
	fmt.Printf("CONNECTED to %d:%d, read %q\n", cid, port, buf[:max(n, 0)])
}
