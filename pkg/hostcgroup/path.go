// Package hostcgroup places a pod's host processes (the VMM, its helpers
// and the shim) in the cgroup containerd names for the pod's sandbox
// (linux.cgroupsPath), so the kubelet sees and limits what a VM pod costs.
// It speaks cgroup v1 (and v1 hybrid) and v2 through containerd/cgroups/v3.
package hostcgroup

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// Path is a parsed linux.cgroupsPath.
type Path struct {
	// Raw is the path as the spec gave it.
	Raw string
	// Systemd is the "slice:prefix:name" syntax of the systemd cgroup driver.
	Systemd bool
	// Dir is the group's directory below each hierarchy's root: the path
	// itself for cgroupfs, for systemd the expanded slice and the
	// "prefix-name.scope" unit systemd would give it.
	Dir string
}

// ParsePath reads a cgroupsPath in either driver's syntax. cgroupfs paths
// must be absolute and clean: a relative one would be relative to the
// shim's own cgroup, which containerd never means for a pod.
func ParsePath(raw string) (Path, error) {
	p := Path{Raw: raw}
	if strings.Contains(raw, ":") {
		f := strings.Split(raw, ":")
		if len(f) != 3 || f[2] == "" {
			return p, fmt.Errorf("cgroupsPath %q: want slice:prefix:name for the systemd driver: %w", raw, errdefs.ErrInvalidArgument)
		}
		slice, prefix, name := f[0], f[1], f[2]
		if slice == "" {
			slice = "system.slice"
		}
		dir, err := expandSlice(slice)
		if err != nil {
			return p, fmt.Errorf("cgroupsPath %q: %w", raw, err)
		}
		unit := name
		if !strings.HasSuffix(name, ".slice") {
			if prefix != "" {
				unit = prefix + "-" + name
			}
			unit += ".scope"
		}
		if strings.Contains(unit, "/") {
			return p, fmt.Errorf("cgroupsPath %q: unit name holds a slash: %w", raw, errdefs.ErrInvalidArgument)
		}
		p.Systemd, p.Dir = true, path.Join(dir, unit)
		return p, nil
	}
	if !strings.HasPrefix(raw, "/") || path.Clean(raw) != raw || raw == "/" {
		return p, fmt.Errorf("cgroupsPath %q: want a clean absolute path below the root: %w", raw, errdefs.ErrInvalidArgument)
	}
	p.Dir = raw
	return p, nil
}

// expandSlice turns "a-b-c.slice" into "/a.slice/a-b.slice/a-b-c.slice",
// the directories systemd nests slices in.
func expandSlice(slice string) (string, error) {
	if !strings.HasSuffix(slice, ".slice") || strings.Contains(slice, "/") {
		return "", fmt.Errorf("slice %q: want a unit name ending in .slice: %w", slice, errdefs.ErrInvalidArgument)
	}
	name := strings.TrimSuffix(slice, ".slice")
	if name == "-" {
		return "/", nil
	}
	if name == "" || strings.HasPrefix(name, "-") || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return "", fmt.Errorf("slice %q: invalid systemd slice name: %w", slice, errdefs.ErrInvalidArgument)
	}
	dir, prefix := "/", ""
	for _, part := range strings.Split(name, "-") {
		prefix += part
		dir = path.Join(dir, prefix+".slice")
		prefix += "-"
	}
	return dir, nil
}
