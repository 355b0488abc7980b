package vmtemplate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Files in one template's directory.
const (
	memoryFile = "memory"
	stateFile  = "state"
	secretFile = "secret"
	metaFile   = "meta.json"
	// lockSuffix names the file a maker holds while it works.
	lockSuffix = ".lock"
	// partSuffix is a template being made (or left by a maker that died).
	partSuffix = ".part"
)

// ErrNone says there is no template for a key yet.
var ErrNone = errors.New("no template")

// ErrBusy says another process is making the template right now.
var ErrBusy = errors.New("another shim is making this template")

// Store is the directory that holds the templates, one subdirectory per key.
type Store struct {
	Dir string
}

// Template is one usable template.
type Template struct {
	Dir    string
	Memory string
	State  string
	// Secret is the agent channel secret the template's guest was booted
	// with: its clones answer to it.
	Secret []byte
	Meta   Meta
}

// Meta describes a template; a restore trusts the files only if they
// match it.
type Meta struct {
	Key         Key       `json:"key"`
	Hash        string    `json:"hash"`
	Created     time.Time `json:"created"`
	MemoryBytes int64     `json:"memory_bytes"`
	StateSHA256 string    `json:"state_sha256"`
	// BootMs is how long the template's VM took to boot, for the log.
	BootMs int64 `json:"boot_ms"`
}

// Lookup returns the template for k, ErrNone when there is none, or an
// error saying why the one there cannot be used (the caller boots cold
// and logs it; the next maker replaces it).
func (s Store) Lookup(k Key) (*Template, error) {
	h := k.Hash()
	dir := filepath.Join(s.Dir, h)
	b, err := readSmall(filepath.Join(dir, metaFile), 1<<16)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNone
	}
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	// A template left on a memory filesystem (by an older kata-go, or a
	// store remounted) is not used either.
	if err := checkStoreFS(s.Dir); err != nil {
		return nil, err
	}
	var m Meta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("template %s: %s: %w", h, metaFile, err)
	}
	k.Format = formatVersion
	if m.Hash != h || !keysEqual(m.Key, k) {
		return nil, fmt.Errorf("template %s: its meta.json describes another VM than this one (a changed file, size or setting, or an edited meta.json)", h)
	}
	t := &Template{Dir: dir, Memory: filepath.Join(dir, memoryFile), State: filepath.Join(dir, stateFile), Meta: m}
	fi, err := os.Stat(t.Memory)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	if fi.Size() != m.MemoryBytes || m.MemoryBytes != int64(k.MemoryMiB)<<20 {
		return nil, fmt.Errorf("template %s: memory file is %d bytes, want %d", h, fi.Size(), int64(k.MemoryMiB)<<20)
	}
	// The device state is small (~200 KiB): hashing it costs well under a
	// millisecond and catches a truncated or altered file before QEMU
	// reads it.
	st, err := readSmall(t.State, 64<<20)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	if sum := sha256.Sum256(st); hex.EncodeToString(sum[:]) != m.StateSHA256 {
		return nil, fmt.Errorf("template %s: device state does not match its checksum", h)
	}
	if t.Secret, err = readSmall(filepath.Join(dir, secretFile), 4096); err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	return t, nil
}

func keysEqual(a, b Key) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// Maker is the work of making a template in dir: boot a VM whose RAM is
// dir's memory file and whose agent holds secret, save its device state
// to the state path, stop it.
type Maker func(memory, state string, secret []byte) error

// Create makes the template for k with mk unless another process is at it
// (ErrBusy: the caller boots cold rather than wait). The template appears
// whole or not at all: it is made in a .part directory and renamed.
func (s Store) Create(k Key, secret []byte, mk Maker) (*Template, error) {
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("template store: %w", err)
	}
	if err := os.Chmod(s.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("template store: %w", err)
	}
	if err := checkStoreFS(s.Dir); err != nil {
		return nil, err
	}
	h := k.Hash()
	unlock, err := s.lock(h)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Someone may have finished it while we waited for nothing (the lock
	// is not waited for, but a maker can finish between Lookup and here).
	if t, err := s.Lookup(k); err == nil {
		return t, nil
	}
	final := filepath.Join(s.Dir, h)
	part := final + partSuffix
	if err := os.RemoveAll(part); err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	if err := os.Mkdir(part, 0o700); err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	defer os.RemoveAll(part)
	if err := writeNew(filepath.Join(part, secretFile), secret); err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	mem, state := filepath.Join(part, memoryFile), filepath.Join(part, stateFile)
	began := time.Now()
	if err := mk(mem, state, secret); err != nil {
		return nil, fmt.Errorf("make template %s: %w", h, err)
	}
	st, err := readSmall(state, 64<<20)
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	sum := sha256.Sum256(st)
	k.Format = formatVersion
	m := Meta{Key: k, Hash: h, Created: time.Now().UTC(), MemoryBytes: int64(k.MemoryMiB) << 20,
		StateSHA256: hex.EncodeToString(sum[:]), BootMs: time.Since(began).Milliseconds()}
	mb, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := writeNew(filepath.Join(part, metaFile), mb); err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	// A template that failed its lookup (stale, corrupt) is replaced; a
	// pod restored from it keeps its mapping of the unlinked file.
	if err := os.RemoveAll(final); err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	if err := os.Rename(part, final); err != nil {
		return nil, fmt.Errorf("template %s: %w", h, err)
	}
	return s.Lookup(k)
}

// lock takes the key's maker lock without waiting.
func (s Store) lock(h string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.Dir, h+lockSuffix), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return nil, fmt.Errorf("template %s: lock: %w", h, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, ErrBusy
		}
		return nil, fmt.Errorf("template %s: lock: %w", h, err)
	}
	// The lock file stays: removing it while another process opens it
	// would let two makers hold locks on different inodes.
	return func() { f.Close() }, nil
}

// List names the templates in the store (complete ones only).
func (s Store) List() ([]Meta, error) {
	ents, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Meta
	for _, e := range ents {
		if !e.IsDir() || strings.HasSuffix(e.Name(), partSuffix) {
			continue
		}
		b, err := readSmall(filepath.Join(s.Dir, e.Name(), metaFile), 1<<16)
		if err != nil {
			continue
		}
		var m Meta
		if json.Unmarshal(b, &m) == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

// Delete removes every template, lock and leftover part. Pods restored
// from a template keep running: their VMs map the memory file, and an
// unlinked file lives as long as a mapping of it.
func (s Store) Delete() error {
	if err := os.RemoveAll(s.Dir); err != nil {
		return fmt.Errorf("delete templates: %w", err)
	}
	return nil
}

func writeNew(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// readSmall reads a file the store wrote, refusing a symlink or one
// larger than limit.
func readSmall(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", filepath.Base(path), limit)
	}
	return b, nil
}
