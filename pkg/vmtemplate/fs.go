package vmtemplate

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// ErrMemoryFS says the store is on a filesystem whose files live in
// memory (tmpfs, ramfs, hugetlbfs), where templates are refused.
var ErrMemoryFS = errors.New("template store on a memory filesystem")

// memoryFS names the filesystems refused, by statfs magic.
var memoryFS = map[int64]string{
	unix.TMPFS_MAGIC:     "tmpfs",
	unix.RAMFS_MAGIC:     "ramfs",
	unix.HUGETLBFS_MAGIC: "hugetlbfs",
}

// checkStoreFS refuses a store on a memory filesystem. A clone maps the
// template's memory file private (copy-on-write), but on these
// filesystems the kernel serves a fault on a page the template never
// touched by allocating that page in the shared file first, read or
// write alike (measured on Linux 6.18: reading or writing every page of a
// 64 MiB sparse file through MAP_PRIVATE allocated all 64 MiB on tmpfs,
// nothing on ext4). Each page any pod's guest touches for the first time
// would stay allocated in the template, unreclaimable, until the template
// is deleted: a guest could grow it to the VM's full size, outliving its
// pod. On a disk filesystem the same faults only fill clean, reclaimable
// page cache, and the file keeps its holes.
func checkStoreFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return fmt.Errorf("template store %s: %w", dir, err)
	}
	if name, ok := memoryFS[int64(st.Type)]; ok {
		return fmt.Errorf("%w: %s is on %s, where every page a pod's guest first touches would be allocated in the shared template file and kept; put factory.template_path on a disk filesystem (default /var/lib/kata-go/templates)", ErrMemoryFS, dir, name)
	}
	return nil
}
