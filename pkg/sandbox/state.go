package sandbox

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kata-go/kata-go/internal/mountinfo"
	"github.com/kata-go/kata-go/pkg/hostcgroup"
	"github.com/kata-go/kata-go/pkg/network"
)

const stateFile = "sandbox.json"

// StateDir is the sandbox's directory under root. It is derived from the
// sandbox's bundle path alone, so `shim delete` run by containerd after the
// shim died finds it with nothing else to go on; a hash keeps socket paths
// under the 108-byte limit however long the bundle path is.
func StateDir(root, sandboxBundle string) string {
	sum := sha256.Sum256([]byte(filepath.Clean(sandboxBundle)))
	return filepath.Join(root, hex.EncodeToString(sum[:8]))
}

// diskState is what cleanup needs when the shim is gone.
type diskState struct {
	SandboxID string       `json:"sandbox_id"`
	Processes []processRef `json:"processes"`
	// CgroupsPath is the pod's host cgroup, removed once its processes
	// are gone.
	CgroupsPath string `json:"cgroups_path,omitempty"`
	// NetNS and Taps let cleanup remove the taps the shim made.
	NetNS        string   `json:"netns,omitempty"`
	NetworkModel string   `json:"network_model,omitempty"`
	Taps         []string `json:"taps,omitempty"`
	Veths        []string `json:"veths,omitempty"`
	// GuestLinkAddr says the namespace has port-forward NAT rules to drop.
	GuestLinkAddr string `json:"guest_link_addr,omitempty"`
}

// processRef names a host process; the start time guards against pid reuse.
type processRef struct {
	Pid       int    `json:"pid"`
	StartTime uint64 `json:"start_time"`
}

func refFor(pid int) processRef {
	st, _ := procStartTime(pid)
	return processRef{Pid: pid, StartTime: st}
}

func writeState(dir string, s diskState) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

func readState(dir string) (diskState, error) {
	var s diskState
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}

// procStartTime is field 22 of /proc/PID/stat.
func procStartTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: skip past the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, errors.New("short stat")
	}
	var v uint64
	_, err = fmt.Sscan(f[19], &v)
	return v, err
}

// killRef SIGKILLs the process if it is still the one recorded and waits
// (bounded) for it to go.
func killRef(r processRef) {
	if st, err := procStartTime(r.Pid); err != nil || st != r.StartTime {
		return
	}
	_ = unix.Kill(r.Pid, unix.SIGKILL)
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		st, err := procStartTime(r.Pid)
		if err != nil || st != r.StartTime {
			return
		}
		// A zombie whose parent is gone is reaped by init; our own child
		// is reaped here.
		var ws unix.WaitStatus
		_, _ = unix.Wait4(r.Pid, &ws, unix.WNOHANG, nil)
		time.Sleep(5 * time.Millisecond)
	}
}

// unmountAll unmounts everything at or below dir, never following a link
// (UMOUNT_NOFOLLOW): a mount point a guest could have swapped for a link
// is not trusted to lead anywhere.
func unmountAll(dir string) error {
	var errs []error
	for i := 0; i < 4; i++ {
		mps, err := mountinfo.Under(dir)
		if err != nil {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		if len(mps) == 0 {
			return nil
		}
		for _, mp := range mps {
			if err := unix.Unmount(mp, unix.UMOUNT_NOFOLLOW); err != nil && err != unix.EINVAL && err != unix.ENOENT {
				if err := unix.Unmount(mp, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil {
					errs = append(errs, fmt.Errorf("unmount %s: %w", mp, err))
				}
			}
		}
	}
	left, err := mountinfo.Under(dir)
	if err != nil {
		errs = append(errs, err)
	} else if len(left) > 0 {
		errs = append(errs, fmt.Errorf("still mounted: %v", left))
	}
	return errors.Join(errs...)
}

// Cleanup frees everything a sandbox left on the host: its VM and helper
// processes, its mounts and its state directory. It needs only the state
// directory and is safe to run more than once.
func Cleanup(dir string) error {
	var cgErr error
	if s, err := readState(dir); err == nil {
		for _, p := range s.Processes {
			killRef(p)
		}
		if len(s.Taps) > 0 {
			pod := &network.Pod{NetNS: s.NetNS, Model: network.Model(s.NetworkModel), GuestLinkAddr: s.GuestLinkAddr}
			for i := range s.Taps {
				pod.Endpoints = append(pod.Endpoints, network.Endpoint{Tap: s.Taps[i], Veth: s.Veths[i]})
			}
			_ = pod.Close() // the namespace may be gone already, taps with it
		}
		if s.CgroupsPath != "" {
			cgErr = hostcgroup.Remove(s.CgroupsPath)
		}
	}
	if err := unmountAll(dir); err != nil {
		return fmt.Errorf("cleanup %s: %w", dir, errors.Join(err, cgErr))
	}
	if cgErr != nil {
		// The state stays, so a later cleanup (shim delete) tries again.
		return fmt.Errorf("cleanup %s: %w", dir, cgErr)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("cleanup %s: %w", dir, err)
	}
	return nil
}

// CleanupContainer frees one container's share after its shim died.
func CleanupContainer(dir, id string) error {
	share := filepath.Join(dir, hostTreeName, id)
	if err := unmountAll(share); err != nil {
		return err
	}
	return os.RemoveAll(share)
}
