package main

import (
	"os"
	"strconv"
	"strings"
)

// clkTck is USER_HZ, the unit of /proc/stat: 100 on every Linux ABI Go
// runs on, whatever the kernel's own HZ.
const clkTck = 100

// busyCPU is the host CPU time spent so far, in seconds, by everything
// (user, nice, system, irq, softirq, steal; not idle or iowait). Deltas of
// it around a measurement say how much CPU it took: when that is close to
// the wall time times the number of cores, the measurement was bound by
// CPU, and no scheduling could make it faster on this host.
func busyCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		fail("%v", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		fail("/proc/stat: unexpected first line %q", line)
	}
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system irq softirq steal
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			fail("/proc/stat: %v", err)
		}
		busy += v
	}
	return busy / clkTck
}

// procCPU is the CPU time, in seconds, process pid has used (user and
// system; fields 14 and 15 of /proc/PID/stat, after the command's closing
// parenthesis, which may itself hold spaces).
func procCPU(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0 // gone
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		fail("/proc/%d/stat: unexpected %q", pid, s)
	}
	var t float64
	for _, i := range []int{11, 12} { // utime stime, counting from field 3 (state)
		v, err := strconv.ParseFloat(f[i], 64)
		if err != nil {
			fail("/proc/%d/stat: %v", pid, err)
		}
		t += v
	}
	return t / clkTck
}
