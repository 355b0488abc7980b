package agent

import (
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPty returns a terminal's master and slave, as a container's console
// socket would hand the agent the master.
func openPty(t *testing.T) (master, slave *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open /dev/ptmx: %v", err)
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return m, s
}

// Closing a terminal process's stdin hangs the terminal up, as
// containerd's runc shim does, even while a ReadStdout waits on it: the
// read ends at EOF and the process's side sees the hang-up.
func TestTerminalCloseStdinHangsUp(t *testing.T) {
	master, slave := openPty(t)
	s := &stdio{tty: true}
	s.setTerminal(master, true)
	defer s.close()

	if _, err := slave.WriteString("before\n"); err != nil {
		t.Fatal(err)
	}
	got, err := read(s.stdout, 1024)
	if err != nil || string(got) != "before\r\n" {
		t.Fatalf("read %q, %v", got, err)
	}

	type answer struct {
		data []byte
		err  error
	}
	pending := make(chan answer, 1)
	go func() {
		d, err := read(s.stdout, 1024)
		pending <- answer{d, err}
	}()
	time.Sleep(20 * time.Millisecond) // let the read block
	s.closeStdin()
	select {
	case a := <-pending:
		if a.err != nil || a.data != nil {
			t.Fatalf("pending read after close: %q, %v; want EOF", a.data, a.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a pending ReadStdout kept the terminal open after CloseStdin")
	}
	done := make(chan struct{})
	go func() {
		buf := make([]byte, 16)
		_, _ = slave.Read(buf) // EOF or EIO once hung up
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the process's side of the terminal was not hung up")
	}
	if _, err := s.write([]byte("x")); err == nil {
		t.Fatal("stdin still writable after CloseStdin")
	}
}
