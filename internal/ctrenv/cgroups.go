package ctrenv

import (
	"os"
	"path/filepath"
	"time"
)

// cgroupsSince lists task cgroups (containerd's default cgroupsPath
// /<namespace>/<id>, in the memory hierarchy or the v2 tree) made after
// since: a kata-go pod's host cgroup, or a runc container's, left behind.
// Under the test lock only this daemon makes them.
func cgroupsSince(since time.Time) []string {
	root := "/sys/fs/cgroup/memory"
	if _, err := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err == nil {
		root = "/sys/fs/cgroup"
	}
	var left []string
	for _, ns := range []string{"default", "k8s.io"} {
		dirs, _ := filepath.Glob(filepath.Join(root, ns, "*"))
		for _, d := range dirs {
			if st, err := os.Stat(d); err == nil && st.IsDir() && st.ModTime().After(since) {
				left = append(left, "cgroup "+d)
			}
		}
	}
	return left
}
