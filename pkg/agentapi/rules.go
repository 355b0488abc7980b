package agentapi

import (
	"regexp"
	"strconv"
)

// Rules both ends of the protocol apply, so host and guest cannot disagree.

var validID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$`)

// ValidID reports whether id may name a container or exec: 1-128 of
// [A-Za-z0-9_.+-], not starting with a symbol (it becomes a path element).
func ValidID(id string) bool { return validID.MatchString(id) }

var procNS = regexp.MustCompile(`^/proc/([0-9]{1,9})/ns/[a-z_]+$`)

// ProcNSPid extracts PID from a namespace path /proc/PID/ns/TYPE: the only
// namespace paths the host passes to the guest (a pod's containers joining
// its sandbox container, PID being the guest pid the agent reported).
func ProcNSPid(path string) (int, bool) {
	m := procNS.FindStringSubmatch(path)
	if m == nil {
		return 0, false
	}
	pid, err := strconv.Atoi(m[1])
	return pid, err == nil && pid > 1
}
