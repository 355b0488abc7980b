//go:build integration

package integration

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clockWindow is how long TestGuestClock samples (KATA_GO_CLOCK_SECONDS).
func clockWindow() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("KATA_GO_CLOCK_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return time.Minute
}

// adjtimexTime is the wall clock busybox's adjtimex printed (its date has
// no %N): "time.tv_sec: S" and "time.tv_usec: U" lines.
func adjtimexTime(out string) (time.Time, error) {
	var sec, usec int64 = -1, -1
	for _, l := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch {
		case k == "time.tv_sec" && err == nil:
			sec = n
		case k == "time.tv_usec" && err == nil:
			usec = n
		}
	}
	if sec < 0 || usec < 0 || usec >= 1e6 {
		return time.Time{}, fmt.Errorf("no time in the guest's adjtimex output %q", out)
	}
	return time.Unix(sec, usec*1000), nil
}

// TestGuestClock: the guest's wall clock is the host's. Over a minute of a
// running pod (TCG), the guest's clock (read with microseconds: busybox's
// date has no %N, its adjtimex prints the clock) must lie within the host's
// clock readings taken just before and just after the exec, widened by
// 10 ms. Without the shim's clock sync the guest runs on the emulated
// RTC's whole second and fails this at once.
func TestGuestClock(t *testing.T) {
	const slack = 10 * time.Millisecond
	for _, spec := range daemons() {
		t.Run(spec.Name, func(t *testing.T) {
			d := startDaemon(t, spec)
			t.Cleanup(func() { d.assertClean(t) })
			if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, "clock", "sleep", "1000"); err != nil {
				t.Fatalf("run -d: %v %s", err, e)
			}
			defer d.remove("clock")
			d.waitStatus(t, "clock", "RUNNING")
			cs, _, _ := d.ctr("task", "exec", "--exec-id", "clocksource", "clock", "sh", "-c",
				"cat /sys/devices/system/clocksource/clocksource0/current_clocksource /sys/devices/system/clocksource/clocksource0/available_clocksource; dmesg | grep -i -e clocksource -e tsc")
			t.Logf("guest clocksource: %s", cs)
			var worst, widest time.Duration
			n := 0
			for end := time.Now().Add(clockWindow()); time.Now().Before(end); n++ {
				before := time.Now()
				out, e, err := d.ctr("task", "exec", "--exec-id", fmt.Sprintf("clk%d", n), "clock", "adjtimex")
				after := time.Now()
				if err != nil {
					t.Fatalf("exec adjtimex: %v %s", err, e)
				}
				g, err := adjtimexTime(out)
				if err != nil {
					t.Fatal(err)
				}
				if g.Before(before.Add(-slack)) || g.After(after.Add(slack)) {
					t.Errorf("sample %d: guest clock %s is outside the host's [%s, %s] ± %s (%s from the midpoint)",
						n, g.Format(time.StampMicro), before.Format(time.StampMicro), after.Format(time.StampMicro), slack,
						g.Sub(before.Add(after.Sub(before)/2)))
				}
				// How far outside the bracket (0 when inside) and how wide it was.
				out1 := max(before.Sub(g), g.Sub(after), 0)
				worst, widest = max(worst, out1), max(widest, after.Sub(before))
				time.Sleep(time.Second)
			}
			t.Logf("%d samples over %s: furthest outside the bracket %s, widest bracket %s", n, clockWindow(), worst, widest)
			for _, l := range strings.Split(d.Log.String(), "\n") {
				if strings.Contains(l, "guest clock") {
					t.Logf("shim: %s", l)
				}
			}
		})
	}
}
