// Package vmtemplate keeps VM templates on disk: a booted guest's memory
// and device state, saved once and restored by every pod whose VM has the
// same shape. It owns the directory layout, the key that says which VM a
// template fits, and the lock that lets one shim make a template while the
// others boot cold. Booting and saving the VM is the sandbox's work.
package vmtemplate

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"syscall"
)

// formatVersion changes whenever kata-go changes what a template holds or
// how a VM from one is launched: every older template is then a mismatch.
const formatVersion = 1

// FileID names one version of a file without reading it: a replaced file
// (make install, a package upgrade) has a new inode or mtime. Hashing the
// 20 MB QEMU binary on every pod start would cost more than the restore.
type FileID struct {
	Path  string `json:"path"`
	Size  int64  `json:"size"`
	MTime int64  `json:"mtime_ns"`
	Inode uint64 `json:"inode"`
	Dev   uint64 `json:"dev"`
}

// IdentifyFile stats path.
func IdentifyFile(path string) (FileID, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return FileID{}, fmt.Errorf("VM template key: %w", err)
	}
	id := FileID{Path: path, Size: fi.Size(), MTime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Inode, id.Dev = st.Ino, st.Dev
	}
	return id, nil
}

// Key is everything that shapes a VM from outside its guest: two VMs with
// equal keys can be one template's clones. Per-pod parts (the shared
// directory's host path, tap fds, MACs, hostname, clock, randomness) are
// not in it: they are given to each clone after the restore.
type Key struct {
	Format       int      `json:"format"`
	QEMU         FileID   `json:"qemu"`
	Kernel       FileID   `json:"kernel"`
	Initrd       FileID   `json:"initrd"`
	KernelParams []string `json:"kernel_params"`
	Machine      string   `json:"machine"`
	Accelerator  string   `json:"accelerator"`
	CPUModel     string   `json:"cpu_model"`
	VCPUs        int      `json:"vcpus"`
	MemoryMiB    int      `json:"memory_mib"`
	TBSizeMiB    int      `json:"tb_size_mib"`
	NICs         int      `json:"nics"`
	Debug        bool     `json:"debug"`
}

// Hash is the key's name on disk.
func (k Key) Hash() string {
	k.Format = formatVersion
	b, err := json.Marshal(k)
	if err != nil {
		panic(err) // only plain fields: cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}
