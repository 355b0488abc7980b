package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/hypervisor"
)

// A check's verdict. Only fail means a pod could not start.
const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "FAIL"
)

type checkResult struct {
	name, status, detail string
}

func (r checkResult) String() string { return fmt.Sprintf("%-4s %-12s %s", r.status, r.name, r.detail) }

// hostProbe is what the checks read from the host; tests replace parts.
type hostProbe struct {
	hardwareKVM func() (bool, string)
	stat        func(string) (os.FileInfo, error)
	// run runs a binary with a timeout and returns its combined output.
	run func(bin string, args ...string) (string, error)
	// cgroupFS is the filesystem magic of /sys/fs/cgroup.
	cgroupFS         func() (int64, error)
	containerdVer    func(addr string) (string, error)
	containerdSocket string
}

func realProbe(containerdSocket string) hostProbe {
	return hostProbe{
		hardwareKVM: hypervisor.HardwareKVM,
		stat:        os.Stat,
		run: func(bin string, args ...string) (string, error) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			return string(out), err
		},
		cgroupFS: func() (int64, error) {
			var st unix.Statfs_t
			if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
				return 0, err
			}
			return st.Type, nil
		},
		containerdVer:    containerdVersion,
		containerdSocket: containerdSocket,
	}
}

func runCheck(args []string) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (default: $"+config.EnvPath+", else "+config.DefaultPath+")")
	addr := fs.String("address", "/run/containerd/containerd.sock", "containerd's socket, to report its version")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	results := runChecks(*cfgPath, realProbe(*addr))
	return printResults(os.Stdout, results)
}

// printResults writes one line per check and returns the exit code: 1 if
// any check failed.
func printResults(w io.Writer, results []checkResult) int {
	code := 0
	for _, r := range results {
		fmt.Fprintln(w, r)
		if r.status == statusFail {
			code = 1
		}
	}
	if code != 0 {
		fmt.Fprintln(w, "a pod could not start on this host with this configuration")
	}
	return code
}

// runChecks checks the configuration, then the host against it. A
// configuration that does not load is a failure; the host is then checked
// against the defaults, so one run names every problem.
func runChecks(cfgPath string, p hostProbe) []checkResult {
	var out []checkResult
	cfg, err := config.Load(cfgPath)
	switch {
	case err != nil:
		out = append(out, checkResult{"config", statusFail, err.Error()})
		cfg = config.Default()
	case cfg.Source == "":
		out = append(out, checkResult{"config", statusOK, "no file: built-in defaults"})
	default:
		out = append(out, checkResult{"config", statusOK, cfg.Source + " parsed and valid"})
	}
	h := cfg.Hypervisor
	out = append(out, checkAccelerator(h.Accelerator, p))
	out = append(out, checkQEMU(h.Path, p)...)
	if h.SharedFS == "virtio-fs" {
		out = append(out, checkBinary("virtiofsd", h.VirtiofsdPath, "--version", p))
	} else {
		out = append(out, checkResult{"virtiofsd", statusOK, "not needed (shared_fs = " + h.SharedFS + ")"})
	}
	out = append(out, checkFile("kernel", h.Kernel, p), checkFile("initrd", h.Initrd, p))
	out = append(out, checkVsock(cfg.Agent.Transport, p), checkTun(cfg.Runtime.NetworkModel, p))
	out = append(out, checkCgroup(p), checkContainerd(p))
	return out
}

func checkAccelerator(accel string, p hostProbe) checkResult {
	hw, why := p.hardwareKVM()
	switch accel {
	case "tcg":
		return checkResult{"accelerator", statusWarn, "tcg (configured): emulation, slow; host: " + why}
	case "kvm":
		if !hw {
			return checkResult{"accelerator", statusFail, "kvm configured but no hardware KVM: " + why}
		}
		return checkResult{"accelerator", statusOK, "kvm (configured): " + why}
	}
	if hw {
		return checkResult{"accelerator", statusOK, "auto picks kvm: " + why}
	}
	return checkResult{"accelerator", statusWarn, "auto picks TCG emulation (slow) because " + why}
}

func checkQEMU(path string, p hostProbe) []checkResult {
	r := checkBinary("qemu", path, "-version", p)
	if r.status != statusOK {
		return []checkResult{r, {"seccomp", statusFail, "unknown: no working QEMU"}}
	}
	// -sandbox is listed only by a QEMU built with seccomp; kata-go
	// always passes it.
	help, err := p.run(path, "-help")
	switch {
	case err != nil:
		return []checkResult{r, {"seccomp", statusFail, fmt.Sprintf("%s -help: %v", path, err)}}
	case !strings.Contains(help, "-sandbox"):
		return []checkResult{r, {"seccomp", statusFail, path + " has no -sandbox (built without seccomp)"}}
	}
	return []checkResult{r, {"seccomp", statusOK, "qemu supports -sandbox"}}
}

// checkBinary checks an executable exists and reports the first line of
// its version output.
func checkBinary(name, path, versionFlag string, p hostProbe) checkResult {
	fi, err := p.stat(path)
	if err != nil {
		return checkResult{name, statusFail, fmt.Sprintf("%s: %v", path, err)}
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return checkResult{name, statusFail, path + ": not an executable file"}
	}
	out, err := p.run(path, versionFlag)
	if err != nil {
		return checkResult{name, statusFail, fmt.Sprintf("%s %s: %v", path, versionFlag, err)}
	}
	line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
	return checkResult{name, statusOK, path + ": " + line}
}

func checkFile(name, path string, p hostProbe) checkResult {
	fi, err := p.stat(path)
	if err != nil {
		return checkResult{name, statusFail, fmt.Sprintf("%s: %v", path, err)}
	}
	if !fi.Mode().IsRegular() || fi.Size() == 0 {
		return checkResult{name, statusFail, path + ": not a non-empty regular file"}
	}
	return checkResult{name, statusOK, fmt.Sprintf("%s (%d bytes)", path, fi.Size())}
}

func checkVsock(transport string, p hostProbe) checkResult {
	_, err := p.stat("/dev/vhost-vsock")
	switch {
	case err == nil:
		return checkResult{"vsock", statusOK, "/dev/vhost-vsock present"}
	case transport == "vsock":
		return checkResult{"vsock", statusFail, "agent.transport = vsock but /dev/vhost-vsock: " + err.Error()}
	}
	return checkResult{"vsock", statusOK, "no /dev/vhost-vsock: the agent channel uses virtio-serial"}
}

func checkTun(model string, p hostProbe) checkResult {
	if model == "none" {
		return checkResult{"tun", statusOK, "not needed (network_model = none)"}
	}
	if _, err := p.stat("/dev/net/tun"); err != nil {
		// Pods without a network namespace (plain ctr run) still start.
		return checkResult{"tun", statusWarn, "pods with a network namespace cannot start: /dev/net/tun: " + err.Error()}
	}
	return checkResult{"tun", statusOK, "/dev/net/tun present"}
}

func checkCgroup(p hostProbe) checkResult {
	magic, err := p.cgroupFS()
	switch {
	case err != nil:
		return checkResult{"cgroup", statusWarn, "/sys/fs/cgroup: " + err.Error()}
	case magic == unix.CGROUP2_SUPER_MAGIC:
		return checkResult{"cgroup", statusOK, "v2 (unified)"}
	}
	if _, err := p.stat("/sys/fs/cgroup/unified"); err == nil {
		return checkResult{"cgroup", statusOK, "v1 (hybrid, v2 at /sys/fs/cgroup/unified)"}
	}
	return checkResult{"cgroup", statusOK, "v1"}
}

func checkContainerd(p hostProbe) checkResult {
	v, err := p.containerdVer(p.containerdSocket)
	if err != nil {
		// The shim does not need a reachable daemon to be checked.
		return checkResult{"containerd", statusWarn, "not reachable at " + p.containerdSocket + ": " + err.Error()}
	}
	return checkResult{"containerd", statusOK, v + " at " + p.containerdSocket}
}
