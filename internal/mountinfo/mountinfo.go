// Package mountinfo reads this process's mount table.
package mountinfo

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Under lists the mount points at or below dir, deepest first (the order
// to unmount them in). A table it cannot read whole is an error: a caller
// that went on with part of it could remove a directory that still has a
// host volume mounted in it.
func Under(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("mount table: %w", err)
	}
	defer f.Close()
	return parse(f, dir)
}

func parse(r io.Reader, dir string) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	// Lines with long overlay options exceed bufio's 64 KiB default.
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			return nil, fmt.Errorf("mount table: malformed line %q", sc.Text())
		}
		mp := unescape(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mount table: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i]) > len(out[j]) })
	return out, nil
}

// unescape undoes the octal escapes mountinfo uses for blanks and '\'.
func unescape(s string) string {
	return strings.NewReplacer(`\040`, " ", `\011`, "\t", `\012`, "\n", `\134`, `\`).Replace(s)
}
