package agent

import (
	"errors"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// stdio holds the agent's ends of a process's standard streams. The process
// writes into kernel pipes (or a pty) and the host pulls with ReadStdout and
// ReadStderr; the agent never closes a read end before the host has seen EOF,
// so a process that prints and exits at once loses nothing.
type stdio struct {
	// stdinMu serialises writes against CloseStdin; it guards stdin.
	stdinMu sync.Mutex
	stdin   *os.File // nil once closed or when the process has no stdin

	stdout *os.File // pipe read end or pty master
	stderr *os.File // nil with a terminal: the pty carries both streams
	tty    bool

	// The process's ends, handed to the runtime and closed after start.
	childIn, childOut, childErr *os.File
}

func newStdio(withStdin, tty bool) (*stdio, error) {
	s := &stdio{tty: tty}
	if tty {
		// The pty master arrives later through the console socket.
		return s, nil
	}
	var err error
	if withStdin {
		if s.childIn, s.stdin, err = os.Pipe(); err != nil {
			return nil, err
		}
	}
	if s.stdout, s.childOut, err = os.Pipe(); err != nil {
		s.close()
		return nil, err
	}
	if s.stderr, s.childErr, err = os.Pipe(); err != nil {
		s.close()
		return nil, err
	}
	growPipe(s.stdout)
	return s, nil
}

// pipeSize is the stdout pipe's capacity. Each ReadStdout is one round trip
// to the host, so the more one read can return the fewer trips a busy
// stream costs: 64 KiB (the default) gave 10 MB/s under TCG.
const pipeSize = 1 << 20

func growPipe(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		// Best effort: an unprivileged limit (pipe-max-size) keeps the default.
		_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, pipeSize)
	})
}

// setTerminal installs the pty master received from the container.
func (s *stdio) setTerminal(master *os.File, withStdin bool) {
	master = pollable(master)
	s.stdout = master
	if withStdin {
		s.stdinMu.Lock()
		s.stdin = master
		s.stdinMu.Unlock()
	}
}

// closeChildEnds drops the agent's copies of the process's ends so that EOF
// arrives when the process (and its children) close theirs.
func (s *stdio) closeChildEnds() {
	for _, f := range []*os.File{s.childIn, s.childOut, s.childErr} {
		if f != nil {
			f.Close()
		}
	}
	s.childIn, s.childOut, s.childErr = nil, nil, nil
}

func (s *stdio) write(data []byte) (int, error) {
	s.stdinMu.Lock()
	defer s.stdinMu.Unlock()
	if s.stdin == nil {
		return 0, errors.New("stdin is closed or was not requested")
	}
	return s.stdin.Write(data)
}

func (s *stdio) closeStdin() {
	s.stdinMu.Lock()
	defer s.stdinMu.Unlock()
	if s.stdin == nil {
		return
	}
	// With a terminal this closes the master: the terminal hangs up (the
	// process gets SIGHUP), as containerd's runc shim does when stdin ends.
	// Output still buffered in the terminal goes with it, there as here.
	s.stdin.Close()
	s.stdin = nil
}

// pollable returns f's descriptor made non-blocking, so that Go's poller
// owns it: a Close then takes effect at once, even while a ReadStdout waits
// on the file (a blocking descriptor stays open until that read returns).
// A failure keeps f as it is.
func pollable(f *os.File) *os.File {
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return f
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return f
	}
	nf := os.NewFile(uintptr(fd), f.Name())
	f.Close()
	return nf
}

// read returns up to n bytes of the stream, or nil at end of stream. It
// blocks until some data is there, then takes whatever else is already
// buffered without waiting for more.
func read(f *os.File, n uint32) ([]byte, error) {
	if f == nil {
		return nil, nil
	}
	if n == 0 || n > maxReadChunk {
		n = maxReadChunk
	}
	buf := make([]byte, n)
	got, err := f.Read(buf)
	if got > 0 {
		got += drain(f, buf[got:])
		return buf[:got], nil
	}
	// A pty master reports EIO once the last slave fd is closed: that is EOF.
	if err == nil || errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) || isEIO(err) {
		return nil, nil
	}
	return nil, err
}

// drain reads what is already buffered in f into buf, without blocking.
func drain(f *os.File, buf []byte) int {
	rc, err := f.SyscallConn()
	if err != nil {
		return 0
	}
	total := 0
	_ = rc.Read(func(fd uintptr) bool {
		// A pty master is a blocking fd: reading it here could hang.
		if fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
			return true
		}
		for total < len(buf) {
			n, err := unix.Read(int(fd), buf[total:])
			if n <= 0 || err != nil {
				break
			}
			total += n
		}
		return true // never wait: the caller already has data to return
	})
	return total
}

// maxReadChunk bounds one ReadStdout reply; ttrpc's message limit is 4 MiB.
const maxReadChunk = 1 << 20

func (s *stdio) close() {
	s.closeChildEnds()
	s.closeStdin()
	if s.stdout != nil {
		s.stdout.Close()
	}
	if s.stderr != nil {
		s.stderr.Close()
	}
}
