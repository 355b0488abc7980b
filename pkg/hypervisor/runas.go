package hypervisor

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// QEMU drops root to a uid:gid of its own per pod. A shared user (nobody)
// would let one pod's QEMU ptrace or signal another's once a guest has
// taken its VMM over.
//
// The ids come from 0x70000000-0x77ffffff, inside the range systemd
// documents as unused (1879048192-2147483647, docs/UIDS-GIDS.md): above
// regular users (1000-60000), DynamicUser (61184-65519), nobody (65534),
// the subuid blocks useradd hands out from 100000 and systemd-nspawn's
// container ranges (524288-1879048191), and below 2^31, where ids go
// negative in code that holds them signed. No /etc/passwd entry is needed:
// QEMU's -runas takes "uid:gid" numerically (QEMU 7.2, measured).
const (
	runAsBase = 0x70000000
	runAsSpan = 1 << 27
	// runAsProbes bounds the search past ids already in use.
	runAsProbes = 64
)

// runAsID picks the pod's id, derived from the state directory like the
// vsock CID, and skips an id some process or passwd/group entry already
// has. Two pods racing to the same free id need colliding hashes in 2^27.
func runAsID(stateDir string) (int, error) {
	h := stateHash(stateDir)
	used, err := procUIDs()
	if err != nil {
		return 0, err
	}
	for i := uint32(0); i < runAsProbes; i++ {
		id := runAsBase + int((h+i)%runAsSpan)
		if used[uint32(id)] || idKnown(id) {
			continue
		}
		return id, nil
	}
	return 0, fmt.Errorf("no free uid for qemu after %d tries from %d", runAsProbes, runAsBase+int(h%runAsSpan))
}

// idKnown says whether a user or group with this id exists.
func idKnown(id int) bool {
	s := strconv.Itoa(id)
	if _, err := user.LookupId(s); err == nil {
		return true
	}
	_, err := user.LookupGroupId(s)
	return err == nil
}

// procUIDs returns the owners of all processes (a /proc/<pid> directory is
// owned by the process's effective uid): a stat each, cheap next to a boot.
func procUIDs() (map[uint32]bool, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	used := map[uint32]bool{}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		fi, err := os.Stat("/proc/" + e.Name())
		if err != nil {
			continue // exited meanwhile
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			used[st.Uid] = true
			used[st.Gid] = true
		}
	}
	return used, nil
}
