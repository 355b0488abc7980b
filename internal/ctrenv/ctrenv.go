// Package ctrenv runs a private containerd (own root, state, socket and
// kata-go state root in one temporary directory) and drives it with its
// own ctr. The integration tests and the benchmarks share it.
package ctrenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kata-go/kata-go/internal/ociimage"
)

// Image is the busybox image every daemon gets.
const Image = "docker.io/library/busybox:kata-go"

// Spec names a containerd build.
type Spec struct {
	Name, Containerd, Ctr string
	// Why says how to get it when it is missing.
	Why string
}

// Specs lists Debian's containerd 1.6 and containerd 2.4 from the module
// proxy (built by `make deps` into /var/cache/kata-go).
func Specs() []Spec {
	v2 := os.Getenv("KATA_GO_CONTAINERD2_DIR")
	if v2 == "" {
		v2 = "/var/cache/kata-go/containerd-v2.4.2"
	}
	return []Spec{
		{"containerd-1.6", "/usr/bin/containerd", "/usr/bin/ctr", "apt-get install containerd"},
		{"containerd-2.4", filepath.Join(v2, "containerd"), filepath.Join(v2, "ctr"),
			"go install github.com/containerd/containerd/v2/cmd/{containerd,ctr}@v2.4.2 with GOBIN=" + v2},
	}
}

// Options shape a daemon.
type Options struct {
	// ShimDir holds containerd-shim-kata-v2; it is put first on PATH.
	ShimDir string
	// Kernel and Initrd are the guest files the kata config names.
	Kernel, Initrd string
	// ExtraConfig is appended to the kata-go TOML config.
	ExtraConfig string
	// CRI configures the CRI plugin: a "kata" runtime handler, CNI from
	// Debian's plugins with a bridge network, and a local pause image.
	CRI bool
	// SandboxImage replaces the local pause image (it is then pulled).
	SandboxImage string
	// RegistryHosts is a containerd config_path: a directory of
	// <registry>/hosts.toml files (mirrors).
	RegistryHosts string
	// PortMap adds CNI's portmap plugin, for pods with host ports.
	PortMap bool
	// DefaultRuntime is the CRI handler for pods that name none ("runc"
	// when empty; "kata" for a kubelet's static pods, which cannot name a
	// RuntimeClass).
	DefaultRuntime string
}

// CRI pod network and images.
const (
	PauseImage = "docker.io/library/busybox:kata-go-pause"
	CRISubnet  = "10.200.0.0/24"
)

// Daemon is a running private containerd.
type Daemon struct {
	Spec      Spec
	Dir       string
	Sock      string
	StateRoot string
	KataCfg   string
	Log       *SyncBuffer

	cmd  *exec.Cmd
	done chan error
	// started is when the daemon first started: task cgroups made since
	// are this daemon's.
	started time.Time
}

// Start launches containerd and imports Image.
func Start(s Spec, o Options) (_ *Daemon, retErr error) {
	dir, err := os.MkdirTemp("", "kgo-ctd-")
	if err != nil {
		return nil, err
	}
	d := &Daemon{Spec: s, Dir: dir, Sock: filepath.Join(dir, "containerd.sock"), StateRoot: filepath.Join(dir, "kata"), Log: &SyncBuffer{}, started: time.Now()}
	defer func() {
		if retErr != nil {
			d.Stop()
		}
	}()
	d.KataCfg = filepath.Join(dir, "kata.toml")
	kata := fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n%s\n[runtime]\nstate_root = %q\n", o.Kernel, o.Initrd, o.ExtraConfig, d.StateRoot)
	if err := os.WriteFile(d.KataCfg, []byte(kata), 0o644); err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version = 2
root = %q
state = %q
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
%s`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), d.Sock, d.Sock+".ttrpc", criConfig(o, dir))), 0o644); err != nil {
		return nil, err
	}
	if o.CRI {
		// A bridge left by a daemon that was killed (not stopped) still
		// routes the pod subnet: pods would be unreachable, and tests
		// would time out instead of saying why.
		if out, _ := exec.Command("ip", "-o", "route", "show", CRISubnet).Output(); len(bytes.TrimSpace(out)) > 0 {
			return nil, fmt.Errorf("pod subnet %s is already routed (%s): a stale bridge of an earlier run? remove it with ip link del", CRISubnet, bytes.TrimSpace(out))
		}
		if err := writeCNI(dir, o.PortMap); err != nil {
			return nil, err
		}
	}
	d.cmd = exec.Command(s.Containerd, "--config", cfg)
	// kata-go's shim first; then the daemon's own directory, so a runc
	// handler gets the runc shim of the same containerd release (an older
	// one cannot read a newer daemon's bootstrap).
	d.cmd.Env = append(os.Environ(), "PATH="+o.ShimDir+":"+filepath.Dir(s.Containerd)+":"+os.Getenv("PATH"), "KATA_GO_CONFIG="+d.KataCfg)
	if err := d.launch(); err != nil {
		return nil, err
	}
	archive := filepath.Join(dir, "busybox.tar")
	f, err := os.Create(archive)
	if err != nil {
		return nil, err
	}
	err = ociimage.Busybox(f, Image, "/bin/busybox")
	f.Close()
	if err != nil {
		return nil, err
	}
	if out, errOut, err := d.Ctr("images", "import", archive); err != nil {
		return nil, fmt.Errorf("import image: %w: %s %s", err, out, errOut)
	}
	if o.CRI {
		pause := filepath.Join(dir, "pause.tar")
		f, err := os.Create(pause)
		if err != nil {
			return nil, err
		}
		err = ociimage.BusyboxWithCmd(f, PauseImage, "/bin/busybox", []string{"sleep", "2147483647"})
		f.Close()
		if err != nil {
			return nil, err
		}
		for _, a := range []string{archive, pause} {
			if out, errOut, err := d.Ctr("-n", "k8s.io", "images", "import", a); err != nil {
				return nil, fmt.Errorf("import %s for CRI: %w: %s %s", a, err, out, errOut)
			}
		}
	}
	return d, nil
}

func criConfig(o Options, dir string) string {
	if !o.CRI {
		return ""
	}
	pause := PauseImage
	if o.SandboxImage != "" {
		pause = o.SandboxImage
	}
	registry := ""
	if o.RegistryHosts != "" {
		registry = fmt.Sprintf("  [plugins.\"io.containerd.grpc.v1.cri\".registry]\n    config_path = %q\n", o.RegistryHosts)
	}
	def := "runc"
	if o.DefaultRuntime != "" {
		def = o.DefaultRuntime
	}
	return fmt.Sprintf(`  sandbox_image = %q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = %q
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kata]
      runtime_type = "io.containerd.kata.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
%s`, pause, def, filepath.Join(dir, "cni"), registry)
}

// writeCNI writes a bridge network with host-local addresses: pods of this
// daemon reach each other over the bridge and nothing else.
func writeCNI(dir string, portmap bool) error {
	if err := os.MkdirAll(filepath.Join(dir, "cni"), 0o755); err != nil {
		return err
	}
	bridge := "kgo" + filepath.Base(dir)[len("kgo-ctd-"):]
	if len(bridge) > 15 {
		bridge = bridge[:15]
	}
	pm := ""
	if portmap {
		pm = `{"type":"portmap","capabilities":{"portMappings":true}},
  `
	}
	conf := fmt.Sprintf(`{"cniVersion":"0.4.0","name":"kata-go-test","plugins":[
  {"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":false,
   "ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}},
  %s{"type":"loopback"}]}`, bridge, CRISubnet, filepath.Join(dir, "cni-ipam"), pm)
	return os.WriteFile(filepath.Join(dir, "cni", "10-kata-go.conflist"), []byte(conf), 0o644)
}

// Bridge is the CNI bridge a CRI daemon's pods hang off.
func (d *Daemon) Bridge() string {
	b := "kgo" + filepath.Base(d.Dir)[len("kgo-ctd-"):]
	if len(b) > 15 {
		b = b[:15]
	}
	return b
}

func (d *Daemon) launch() error {
	d.cmd.Stdout, d.cmd.Stderr = d.Log, d.Log
	if err := d.cmd.Start(); err != nil {
		return err
	}
	d.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(d.cmd, d.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, _, err := d.Ctr("version"); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not come up: %s", d.Spec.Name, Tail(d.Log.String(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *Daemon) interrupt() {
	if d.cmd == nil || d.cmd.Process == nil || d.done == nil {
		return
	}
	_ = d.cmd.Process.Signal(os.Interrupt)
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		_ = d.cmd.Process.Kill()
		<-d.done
	}
}

// Restart stops containerd (not its shims) and starts it again.
func (d *Daemon) Restart() error {
	d.interrupt()
	cmd := exec.Command(d.cmd.Path, d.cmd.Args[1:]...)
	cmd.Env = d.cmd.Env
	d.cmd = cmd
	return d.launch()
}

// Stop ends containerd, then every shim of this daemon by pid, unmounts
// what containerd left and removes the directory.
func (d *Daemon) Stop() {
	d.interrupt()
	for _, p := range ProcessesMatching("-address " + d.Sock) {
		var pid int
		fmt.Sscan(strings.SplitN(p, ":", 2)[0], &pid)
		if pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	for _, m := range MountsUnder(d.Dir) {
		_ = exec.Command("umount", "-l", m).Run()
	}
	_ = exec.Command("ip", "link", "del", d.Bridge()).Run()
	os.RemoveAll(d.Dir)
}

// Ctr runs the daemon's own ctr, bounded to two minutes.
func (d *Daemon) Ctr(args ...string) (string, string, error) { return d.CtrIn(nil, args...) }

// CtrIn is Ctr with stdin.
func (d *Daemon) CtrIn(stdin []byte, args ...string) (string, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, d.Spec.Ctr, append([]string{"-a", d.Sock}, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	err := cmd.Run()
	return out.String(), errOut.String(), err
}

// CtrCmd is an unstarted ctr command.
func (d *Daemon) CtrCmd(args ...string) *exec.Cmd {
	return exec.Command(d.Spec.Ctr, append([]string{"-a", d.Sock}, args...)...)
}

// TaskStatus is the STATUS column of `ctr task ls` for id ("" if absent).
func (d *Daemon) TaskStatus(id string) string {
	out, _, err := d.Ctr("task", "ls")
	if err != nil {
		return ""
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == id {
			return f[2]
		}
	}
	return ""
}

// WaitStatus waits (up to a minute) for the task to reach want.
func (d *Daemon) WaitStatus(id, want string) error {
	deadline := time.Now().Add(60 * time.Second)
	for d.TaskStatus(id) != want {
		if time.Now().After(deadline) {
			return fmt.Errorf("task %s: status %q, want %q", id, d.TaskStatus(id), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// Remove deletes a task and its container, whatever state they are in.
func (d *Daemon) Remove(id string) {
	_, _, _ = d.Ctr("task", "kill", "-s", "KILL", id)
	for i := 0; i < 100 && d.TaskStatus(id) == "RUNNING"; i++ {
		time.Sleep(50 * time.Millisecond)
	}
	_, _, _ = d.Ctr("task", "delete", id)
	_, _, _ = d.Ctr("container", "rm", id)
}

// Leftovers lists this daemon's VMs, helpers, shims, mounts, sandbox
// state directories and task cgroups; empty when all was cleaned up.
func (d *Daemon) Leftovers() []string {
	left := append(ProcessesMatching(d.StateRoot), ProcessesMatching("-address "+d.Sock)...)
	for _, m := range MountsUnder(d.StateRoot) {
		left = append(left, "mount "+m)
	}
	entries, _ := os.ReadDir(d.StateRoot)
	for _, e := range entries {
		left = append(left, "state "+e.Name())
	}
	return append(left, cgroupsSince(d.started)...)
}

// WaitClean waits up to limit for Leftovers to be empty.
func (d *Daemon) WaitClean(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		left := d.Leftovers()
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("left behind: " + strings.Join(left, "; "))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ExitCode is a command's exit status (ctr run exits with the task's).
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// SyncBuffer is a bounded buffer safe for a daemon's output goroutine.
type SyncBuffer struct {
	// mu guards buf.
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 16<<20 {
		b.buf.Reset()
	}
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Tail is the last n lines of s.
func Tail(s string, n int) string {
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, "\n")
}
