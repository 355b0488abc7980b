package metrics

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Memory is a process's resident and proportional set size.
type Memory struct{ RSS, PSS uint64 }

// procRoot is /proc; tests point it elsewhere.
var procRoot = "/proc"

// ReadMemory reads /proc/PID/smaps_rollup: Pss divides shared pages among
// their users, so summing it over pods does not count QEMU's binary once
// per VM.
func ReadMemory(pid int) (Memory, error) {
	f, err := os.Open(filepath.Join(procRoot, strconv.Itoa(pid), "smaps_rollup"))
	if err != nil {
		return Memory{}, err
	}
	defer f.Close()
	var m Memory
	var found int
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[2] != "kB" {
			continue
		}
		v, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Rss:":
			m.RSS, found = v*1024, found+1
		case "Pss:":
			m.PSS, found = v*1024, found+1
		}
	}
	if err := sc.Err(); err != nil {
		return Memory{}, err
	}
	if found != 2 {
		return Memory{}, fmt.Errorf("pid %d: no Rss and Pss in smaps_rollup", pid)
	}
	return m, nil
}
