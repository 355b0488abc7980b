package hypervisor

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"unicode"
	"unicode/utf8"
)

// consoleCap bounds console.log; once full it is rotated to console.log.1
// (replacing the previous one), so a guest that writes without end costs
// at most twice this on the host's /run, whatever it writes.
const consoleCap = 1 << 20

// console drains the guest serial console from a pipe QEMU writes into a
// capped, rotated file, and keeps the last few KiB for error messages.
//
// It reads for as long as any write end is open, that is until QEMU exits,
// and never stops earlier: a pipe nobody reads fills and blocks QEMU's
// main loop on its next console write. If the file cannot be written the
// bytes are dropped, the pipe is still drained.
type console struct {
	path string
	max  int64
	log  *slog.Logger
	tail *tailBuffer
	done chan struct{}
	// lines copies the console, line by line and rate-limited, into the
	// shim's log (nil: no copy).
	lines *guestLog

	// Owned by the run goroutine alone.
	f    *os.File
	size int64
}

// startConsole opens the pipe and the log and starts draining. The caller
// hands w to QEMU and closes its own copy once QEMU has started.
func startConsole(path string, max int64, log *slog.Logger, lines *guestLog) (w *os.File, c *console, err error) {
	f, err := openConsoleFile(path)
	if err != nil {
		return nil, nil, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("console pipe: %w", err)
	}
	c = &console{path: path, max: max, log: log, tail: newTailBuffer(4 << 10), done: make(chan struct{}), f: f, lines: lines}
	go c.run(r)
	return w, c, nil
}

// openConsoleFile creates the log afresh (a retried start reuses the name).
// O_NOFOLLOW: a symlink planted in the state directory is not followed.
func openConsoleFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	return f, nil
}

func (c *console) run(r *os.File) {
	defer close(c.done)
	defer r.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c.write(buf[:n])
		}
		if err != nil {
			if !errors.Is(err, io.EOF) {
				c.log.Warn("guest console read", "err", err)
			}
			break
		}
	}
	if c.f != nil {
		c.f.Close()
		c.f = nil
	}
	if c.lines != nil {
		c.lines.Close()
	}
}

func (c *console) write(p []byte) {
	_, _ = c.tail.Write(p)
	if c.lines != nil {
		c.lines.Write(p)
	}
	for len(p) > 0 && c.f != nil {
		if c.size >= c.max {
			c.rotate()
			continue
		}
		n := min(int64(len(p)), c.max-c.size)
		k, err := c.f.Write(p[:n])
		c.size += int64(k)
		p = p[k:]
		if err != nil {
			c.log.Warn("guest console log write failed; dropping console output", "path", c.path, "err", err)
			c.f.Close()
			c.f = nil
		}
	}
}

// rotate keeps one previous file: the start of a long boot is usually
// what explains it, the end what explains its failure.
func (c *console) rotate() {
	c.f.Close()
	c.f = nil
	c.size = 0
	if err := os.Rename(c.path, c.path+".1"); err != nil {
		c.log.Warn("guest console log rotation failed; dropping console output", "err", err)
		return
	}
	f, err := openConsoleFile(c.path)
	if err != nil {
		c.log.Warn("guest console log reopen failed; dropping console output", "err", err)
		return
	}
	c.f = f
}

// lastLines is the end of the console, for error messages. The guest
// wrote it: anything but printable text and newlines becomes '?', so no
// escape sequence reaches a terminal or log viewer.
func (c *console) lastLines(n int) string {
	s := strings.Map(func(r rune) rune {
		if r == '\n' || r == '\t' || (unicode.IsPrint(r) && r != utf8.RuneError) {
			return r
		}
		return '?'
	}, c.tail.String())
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
