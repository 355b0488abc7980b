package sandbox

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/agentapi/channel"
	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hypervisor"
	"github.com/kata-go/kata-go/pkg/vmtemplate"
)

// templateSettle is how long a template's guest idles after the host hung
// up before it is saved: the agent goes back to waiting for a host, and
// boot's deferred work ends, so every clone starts from a quiet guest.
const templateSettle = 200 * time.Millisecond

// templateRunDir holds a template VM's sockets while it is made.
const templateRunDir = "/run"

// templateMAC is the MAC of a template's i-th NIC. Every clone's guest
// starts with it; the agent gives the NIC the pod's own MAC before it
// comes up.
func templateMAC(i int) string { return fmt.Sprintf("02:6b:67:00:00:%02x", i) }

// templateKey is the shape of the VM hc describes with nics NICs.
func templateKey(hc hypervisor.Config, nics int) (vmtemplate.Key, error) {
	accel, _, err := hypervisor.ResolveAccelerator(hc.Accelerator)
	if err != nil {
		return vmtemplate.Key{}, err
	}
	k := vmtemplate.Key{
		KernelParams: hc.KernelParams, Machine: hc.MachineType, Accelerator: string(accel), CPUModel: hc.CPUModel,
		VCPUs: hc.VCPUs, MemoryMiB: hc.MemoryMiB, TBSizeMiB: hc.TBSizeMiB, NICs: nics, Debug: hc.Debug,
	}
	for _, f := range []struct {
		id   *vmtemplate.FileID
		path string
	}{{&k.QEMU, hc.QEMUPath}, {&k.Kernel, hc.Kernel}, {&k.Initrd, hc.Initrd}} {
		if *f.id, err = vmtemplate.IdentifyFile(f.path); err != nil {
			return vmtemplate.Key{}, err
		}
	}
	return k, nil
}

// templateFor returns the template a pod's VM (hc, nics NICs) can be
// restored from, making it first when this shim is the first to need it,
// or nil and why the VM boots cold. It never fails a pod.
func templateFor(ctx context.Context, cfg config.Config, hc hypervisor.Config, nics int, deps Deps) (*vmtemplate.Template, string) {
	t, err := ensureTemplate(ctx, cfg, hc, nics, deps)
	if errors.Is(err, vmtemplate.ErrMemoryFS) {
		// A setting to fix, not a passing state: say it louder.
		hc.Logger.Warn("VM template store refused", "err", err)
	}
	if err != nil {
		return nil, err.Error()
	}
	return t, ""
}

// ensureTemplate finds the template for hc with nics NICs, or makes it.
func ensureTemplate(ctx context.Context, cfg config.Config, hc hypervisor.Config, nics int, deps Deps) (*vmtemplate.Template, error) {
	if hc.Transport != hypervisor.TransportSerial {
		return nil, fmt.Errorf("the agent transport is %s; templates need the serial transport", hc.Transport)
	}
	k, err := templateKey(hc, nics)
	if err != nil {
		return nil, err
	}
	store := vmtemplate.Store{Dir: cfg.Factory.TemplatePath}
	t, err := store.Lookup(k)
	if err == nil {
		return t, nil
	}
	why := "no template for this VM yet"
	if !errors.Is(err, vmtemplate.ErrNone) {
		why = err.Error()
		hc.Logger.Warn("VM template unusable, making a new one", "err", err)
	}
	secret, err := channel.NewSecret()
	if err != nil {
		return nil, err
	}
	began := time.Now()
	t, err = store.Create(k, secret, func(mem, state string, secret []byte) error {
		return makeTemplate(ctx, cfg, hc, nics, deps, mem, state, secret)
	})
	if errors.Is(err, vmtemplate.ErrBusy) {
		return nil, fmt.Errorf("%s; %w", why, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%s; making one failed: %w", why, err)
	}
	hc.Logger.Info("VM template made", "template", t.Dir, "took", time.Since(began))
	return t, nil
}

// MakeTemplate makes the template a pod of cfg's base size with nics NICs
// restores from (`containerd-shim-kata-v2 template create`), or finds the
// one there is.
func MakeTemplate(ctx context.Context, cfg config.Config, nics int, log *slog.Logger) (*vmtemplate.Template, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	size, err := vmSize(cfg.Hypervisor.VCPUs, cfg.Hypervisor.MemoryMiB, nil)
	if err != nil {
		return nil, err
	}
	transport, err := pickTransport(cfg.Agent.Transport)
	if err != nil {
		return nil, err
	}
	hc := hypervisorConfig(cfg, size, transport, "", nil, log)
	return ensureTemplate(ctx, cfg, hc, nics, DefaultDeps())
}

// Templates lists the templates cfg's store holds.
func Templates(cfg config.Config) ([]vmtemplate.Meta, error) {
	return vmtemplate.Store{Dir: cfg.Factory.TemplatePath}.List()
}

// DeleteTemplates removes every template of cfg's store. Running pods
// restored from one keep running.
func DeleteTemplates(cfg config.Config) error {
	return vmtemplate.Store{Dir: cfg.Factory.TemplatePath}.Delete()
}

// makeTemplate boots a VM with no container, waits for its agent, hangs
// up, lets the guest settle and saves it.
func makeTemplate(ctx context.Context, cfg config.Config, hc hypervisor.Config, nics int, deps Deps, mem, state string, secret []byte) error {
	dir := filepath.Dir(mem)
	share := filepath.Join(dir, "share")
	if err := os.Mkdir(share, 0o700); err != nil {
		return err
	}
	defer os.RemoveAll(share)
	// The VM's sockets live apart from the store: a unix socket path
	// must stay under 108 bytes, and template_path may be long.
	vmDir, err := os.MkdirTemp(templateRunDir, "kata-go-template-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(vmDir)
	hc.StateDir = vmDir
	hc.AgentSecret = secret
	hc.Template = hypervisor.TemplateConfig{Mode: hypervisor.MakeTemplate, MemoryPath: mem}
	hc.Logger = hc.Logger.With("template", filepath.Base(dir))
	vm, err := deps.NewHypervisor(hc)
	if err != nil {
		return err
	}
	saver, ok := vm.(hypervisor.Templater)
	if !ok {
		return fmt.Errorf("the hypervisor (%T) cannot save templates", vm)
	}
	if err := addTemplateDevices(vm, share, nics, nil); err != nil {
		return err
	}
	if err := vm.Start(ctx); err != nil {
		return fmt.Errorf("boot the template's VM: %w", err)
	}
	defer vm.Stop(context.Background())
	dctx, cancel := context.WithTimeout(ctx, cfg.Agent.DialTimeout.Duration)
	defer cancel()
	a, err := deps.DialAgent(dctx, vm.AgentAddress())
	if err != nil {
		return fmt.Errorf("the template's agent: %w", err)
	}
	// The guest runs a warm-up container first: a create's time limit.
	actx, acancel := context.WithTimeout(ctx, cfg.Agent.CreateTimeout.Duration)
	_, err = a.PrepareTemplate(actx, &agentapi.Empty{})
	acancel()
	a.Close()
	if err != nil {
		return fmt.Errorf("the template's agent: %w", err)
	}
	select {
	case <-time.After(templateSettle):
	case <-vm.Exited():
		return fmt.Errorf("the template's VM exited: %v", vm.ExitErr())
	case <-ctx.Done():
		return ctx.Err()
	}
	return saver.SaveTemplate(ctx, state)
}

// addTemplateDevices gives a template's VM, or a clone of it, the same
// devices in the same order: the pod share over 9p, then the NICs (with
// the pod's tap fds in a clone, none in the template).
func addTemplateDevices(vm hypervisor.Hypervisor, share string, nics int, taps []hypervisor.NetTap) error {
	if err := vm.AddDevice(hypervisor.SharedDir{Tag: shareTag, HostPath: share, Type: hypervisor.SharedFS9P}); err != nil {
		return err
	}
	for i := 0; i < nics; i++ {
		t := hypervisor.NetTap{ID: fmt.Sprintf("net%d", i)}
		if taps != nil {
			t = taps[i]
		}
		// A clone's device keeps the template's MAC: the MAC is device
		// state the restore brings back, and the guest's driver read it
		// at boot. The agent changes it.
		t.MAC = templateMAC(i)
		if err := vm.AddDevice(t); err != nil {
			return err
		}
	}
	return nil
}

// startVM starts the pod's VM: restored from tmpl when there is one and
// the restore works, else booted. A failed restore is logged and the VM
// boots cold: a template never fails a pod.
func (s *Sandbox) startVM(ctx context.Context, hc hypervisor.Config, tmpl *vmtemplate.Template, taps []hypervisor.NetTap) (hypervisor.Hypervisor, error) {
	export := filepath.Join(s.stateDir, exportName)
	if tmpl != nil {
		rc := hc
		rc.AgentSecret = tmpl.Secret
		rc.Template = hypervisor.TemplateConfig{Mode: hypervisor.FromTemplate, MemoryPath: tmpl.Memory, StatePath: tmpl.State}
		vm, err := s.deps.NewHypervisor(rc)
		if err == nil {
			err = addTemplateDevices(vm, export, len(taps), taps)
		}
		if err == nil {
			err = vm.Start(ctx)
		}
		if err == nil {
			s.restored = true
			s.sharedFS = string(hypervisor.SharedFS9P)
			s.log.Info("VM restored from template", "template", tmpl.Dir)
			return vm, nil
		}
		s.log.Warn("VM template restore failed, booting cold", "template", tmpl.Dir, "err", err)
	}
	vm, err := s.deps.NewHypervisor(hc)
	if err != nil {
		return nil, err
	}
	if err := vm.AddDevice(hypervisor.SharedDir{Tag: shareTag, HostPath: export, Type: hypervisor.SharedFSType(s.sharedFS)}); err != nil {
		return nil, err
	}
	for _, t := range taps {
		if err := vm.AddDevice(t); err != nil {
			return nil, err
		}
	}
	if err := vm.Start(ctx); err != nil {
		return nil, fmt.Errorf("start VM: %w", err)
	}
	return vm, nil
}

// reseed gives a restored guest its own randomness: until now it has the
// template's CRNG state, the same as every sibling's.
func (s *Sandbox) reseed(ctx context.Context) error {
	seed := make([]byte, 64)
	if _, err := rand.Read(seed); err != nil {
		return err
	}
	if _, err := s.agent.ReseedRandom(ctx, &agentapi.ReseedRandomRequest{Seed: seed}); err != nil {
		return fmt.Errorf("reseed the guest's randomness: %w", s.explain(err))
	}
	return nil
}

// Restored says the VM came from a template.
func (s *Sandbox) Restored() bool { return s.restored }
