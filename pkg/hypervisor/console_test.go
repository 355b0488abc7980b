package hypervisor

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The console keeps at most two capped files, however much is written, and
// its reader ends when the last write end closes.
func TestConsoleCapsAndRotates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, consoleFile)
	w, c, err := startConsole(path, 1000, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	line := []byte("0123456789abcdefghijklmnopqrstuvwxyz\n")
	for i := 0; i < 1000; i++ {
		if _, err := w.Write(line); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Write([]byte("the end\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	<-c.done
	cur, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	old, err := os.ReadFile(path + ".1")
	if err != nil {
		t.Fatal(err)
	}
	if len(cur) > 1000 || len(old) != 1000 {
		t.Errorf("console.log %d bytes, console.log.1 %d; want <= 1000 and 1000", len(cur), len(old))
	}
	if !bytes.HasSuffix(cur, []byte("the end\n")) {
		t.Errorf("console.log does not end with the last write: %q", cur[max(0, len(cur)-40):])
	}
	if got := c.lastLines(2); !strings.HasSuffix(got, "the end") || strings.Count(got, "\n") != 1 {
		t.Errorf("last lines %q", got)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("state dir has %d files, want console.log and console.log.1", len(ents))
	}
}

// A file that cannot be written does not stop the draining: QEMU must
// never block on a full pipe.
func TestConsoleDrainsWhenTheFileFails(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, consoleFile)
	w, c, err := startConsole(path, 100, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	// Rotation fails: console.log.1 is a non-empty directory.
	if err := os.MkdirAll(filepath.Join(path+".1", "x"), 0o700); err != nil {
		t.Fatal(err)
	}
	chunk := bytes.Repeat([]byte("y"), 64<<10)
	for i := 0; i < 64; i++ { // 4 MiB, far past a pipe's 64 KiB
		if _, err := w.Write(chunk); err != nil {
			t.Fatal(err)
		}
	}
	w.Close()
	<-c.done
	if fi, err := os.Stat(path); err != nil || fi.Size() > 100 {
		t.Errorf("console.log: %v %v", fi, err)
	}
}

func TestConsoleDoesNotFollowSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.Symlink(target, filepath.Join(dir, consoleFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := startConsole(filepath.Join(dir, consoleFile), 100, slog.New(slog.DiscardHandler), nil); err == nil {
		t.Fatal("console log opened through a symlink")
	}
}

func TestConsoleTailIsPrintable(t *testing.T) {
	w, c, err := startConsole(filepath.Join(t.TempDir(), consoleFile), 100, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("ok\n\x1b[2Jcleared\x00\xff\n"))
	w.Close()
	<-c.done
	if got := c.lastLines(2); got != "ok\n?[2Jcleared??" {
		t.Errorf("tail %q", got)
	}
}
