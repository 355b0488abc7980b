package hypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// TemplateMode says whether a VM makes a template or comes from one.
type TemplateMode int

const (
	// NoTemplate boots the VM from its kernel.
	NoTemplate TemplateMode = iota
	// MakeTemplate boots the VM with its RAM in Template.MemoryPath, mapped
	// shared, so that once SaveTemplate has run the file holds the guest's
	// memory and Template.StatePath its devices.
	MakeTemplate
	// FromTemplate does not boot: the guest's RAM is a private
	// copy-on-write mapping of Template.MemoryPath (nothing the guest
	// writes reaches the file) and its devices are loaded from
	// Template.StatePath; the guest resumes where the template stopped.
	FromTemplate
)

// TemplateConfig ties a VM to a template's files.
type TemplateConfig struct {
	Mode       TemplateMode
	MemoryPath string
	// StatePath is the device state: read by FromTemplate; SaveTemplate
	// takes its own path.
	StatePath string
}

// Templater is a VM that can be saved as a template. Only a VM started
// with MakeTemplate can.
type Templater interface {
	// SaveTemplate pauses the guest and writes its device state to path
	// (created, 0600); its RAM is already in the template's memory file.
	// The VM stays paused: Stop it afterwards.
	SaveTemplate(ctx context.Context, path string) error
}

var _ Templater = (*QEMU)(nil)

// qmpStateFD names the migration stream's fd inside QEMU.
const qmpStateFD = "kata-go-template"

// ignoreShared leaves shared RAM (the template's memory file) out of the
// migration stream: the stream is device state only (~200 KiB), and a
// restore maps the file instead of reading pages.
var ignoreShared = map[string]any{"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}}}

func (c *Config) validateTemplate(devices []Device) error {
	t := c.Template
	if t.Mode == NoTemplate {
		return nil
	}
	if t.MemoryPath == "" {
		return errors.New("VM template: no memory file path")
	}
	if t.Mode == FromTemplate && t.StatePath == "" {
		return errors.New("VM template: no device state path to restore from")
	}
	// A vhost-vsock guest keeps the CID it read at boot: every clone
	// would answer to the template's.
	if c.Transport != TransportSerial {
		return fmt.Errorf("VM template: agent transport %s: templates need the serial transport", c.Transport)
	}
	for _, d := range devices {
		switch d := d.(type) {
		case SharedDir:
			// virtiofsd maps the memory file, not the clone's private
			// pages: it would read and write the template's memory.
			if d.Type != SharedFS9P {
				return fmt.Errorf("VM template: shared directory %s is %s: a VM from a template can only share files over 9p", d.Tag, d.Type)
			}
		case Block:
			return fmt.Errorf("VM template: block device %s: not supported with templates", d.ID)
		}
	}
	return nil
}

// restoreState loads the template's device state into a QEMU started with
// -incoming defer and lets the guest run.
func (q *QEMU) restoreState(ctx context.Context) error {
	q.mu.Lock()
	m := q.qmp
	q.mu.Unlock()
	f, err := os.OpenFile(q.cfg.Template.StatePath, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return fmt.Errorf("VM template state: %w", err)
	}
	defer f.Close()
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := m.execute(qctx, "migrate-set-capabilities", ignoreShared); err != nil {
		return err
	}
	if err := m.sendFD(qctx, qmpStateFD, f); err != nil {
		return err
	}
	if _, err := m.execute(qctx, "migrate-incoming", map[string]any{"uri": "fd:" + qmpStateFD}); err != nil {
		return err
	}
	// The load runs in QEMU's main loop; the VM is "inmigrate" until it
	// is done, then "paused". A stream QEMU cannot load ends QEMU.
	for {
		raw, err := m.execute(qctx, "query-status", nil)
		if err != nil {
			return fmt.Errorf("VM template restore: %w", err)
		}
		var st struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("VM template restore: query-status: %w", err)
		}
		switch st.Status {
		case "inmigrate":
		case "paused", "postmigrate", "prelaunch":
			if _, err := m.execute(qctx, "cont", nil); err != nil {
				return fmt.Errorf("VM template restore: %w", err)
			}
			return nil
		case "running":
			return nil
		default:
			return fmt.Errorf("VM template restore: VM is %q", st.Status)
		}
		select {
		case <-q.Exited():
			return fmt.Errorf("VM template restore: %w", q.ExitErr())
		case <-qctx.Done():
			return fmt.Errorf("VM template restore: %w", qctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}

// SaveTemplate implements Templater.
func (q *QEMU) SaveTemplate(ctx context.Context, path string) (retErr error) {
	if q.cfg.Template.Mode != MakeTemplate {
		return errors.New("save template: the VM was not started to make one")
	}
	q.mu.Lock()
	m := q.qmp
	q.mu.Unlock()
	if m == nil {
		return errors.New("save template: the VM is not running")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("save template: %w", err)
	}
	defer func() {
		if cerr := f.Close(); retErr == nil && cerr != nil {
			retErr = fmt.Errorf("save template: %w", cerr)
		}
		if retErr != nil {
			os.Remove(path)
		}
	}()
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, c := range []struct {
		cmd  string
		args map[string]any
	}{{"stop", nil}, {"migrate-set-capabilities", ignoreShared}} {
		if _, err := m.execute(qctx, c.cmd, c.args); err != nil {
			return fmt.Errorf("save template: %w", err)
		}
	}
	if err := m.sendFD(qctx, qmpStateFD, f); err != nil {
		return fmt.Errorf("save template: %w", err)
	}
	if _, err := m.execute(qctx, "migrate", map[string]any{"uri": "fd:" + qmpStateFD}); err != nil {
		return fmt.Errorf("save template: %w", err)
	}
	for {
		raw, err := m.execute(qctx, "query-migrate", nil)
		if err != nil {
			return fmt.Errorf("save template: %w", err)
		}
		var st struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(raw, &st); err != nil {
			return fmt.Errorf("save template: query-migrate: %w", err)
		}
		switch st.Status {
		case "completed":
			return f.Sync()
		case "failed", "cancelled":
			return fmt.Errorf("save template: migration %s: %s", st.Status, st.ErrorDesc)
		}
		select {
		case <-qctx.Done():
			return fmt.Errorf("save template: %w", qctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
}
