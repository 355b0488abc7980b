package hypervisor

import (
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordLog keeps every record a slog.Logger receives.
type recordLog struct {
	mu   sync.Mutex // guards recs
	recs []slog.Record
}

func (r *recordLog) Enabled(context.Context, slog.Level) bool { return true }
func (r *recordLog) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Clone())
	return nil
}
func (r *recordLog) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *recordLog) WithGroup(string) slog.Handler      { return r }

func attrsOf(rec slog.Record) map[string]slog.Value {
	m := map[string]slog.Value{}
	rec.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value; return true })
	return m
}

// A flooding guest gets its burst, then the rate, and every refused line
// is counted in a warning: nothing it writes grows the host's log faster.
func TestGuestLogFlood(t *testing.T) {
	rec := &recordLog{}
	g := newGuestLog(slog.New(rec), false)
	const total = 20000
	begin := time.Now()
	for i := range total {
		g.Write([]byte("flood line " + strings.Repeat("x", i%7) + "\n"))
	}
	elapsed := time.Since(begin)
	g.Close()

	var guest, dropped int
	for _, r := range rec.recs {
		switch r.Message {
		case "guest":
			guest++
		default:
			dropped += int(attrsOf(r)["dropped"].Int64())
		}
	}
	most := guestLinesBurst + int(elapsed.Seconds()*guestLinesPerSec) + 1
	if guest < guestLinesBurst || guest > most {
		t.Errorf("%d guest lines logged in %s, want %d..%d", guest, elapsed, guestLinesBurst, most)
	}
	if guest+dropped != total {
		t.Errorf("%d logged + %d reported dropped != %d written", guest, dropped, total)
	}
}

// Lines are cut at guestLineMax, stripped of control bytes, tagged with
// their source, and may arrive in any chunking.
func TestGuestLogLines(t *testing.T) {
	rec := &recordLog{}
	g := newGuestLog(slog.New(rec), false)
	long := strings.Repeat("a", 3*guestLineMax)
	input := "kata-go-agent: serving on vport\r\n[ 0.1] kernel \x1b[31mred\x1b[0m\n\n" + long + "\nno newline at end"
	for i := 0; i < len(input); i += 7 {
		g.Write([]byte(input[i:min(i+7, len(input))]))
	}
	g.Close()
	type line struct {
		source, text string
		cut          bool
	}
	var got []line
	for _, r := range rec.recs {
		a := attrsOf(r)
		_, cut := a["truncated"]
		got = append(got, line{a["source"].String(), a["line"].String(), cut})
	}
	want := []line{
		{"agent", "serving on vport", false},
		{"console", "[ 0.1] kernel ?[31mred?[0m", false},
		{"console", strings.Repeat("a", guestLineMax), true},
		{"console", "no newline at end", false},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d records %v, want %v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// The console tees into the guest log and still fills its file.
func TestConsoleTeesIntoGuestLog(t *testing.T) {
	rec := &recordLog{}
	log := slog.New(rec)
	w, c, err := startConsole(filepath.Join(t.TempDir(), consoleFile), 1000, log, newGuestLog(log, false))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("kata-go-agent: hello\n")); err != nil {
		t.Fatal(err)
	}
	w.Close()
	<-c.done
	if len(rec.recs) != 1 || attrsOf(rec.recs[0])["line"].String() != "hello" {
		t.Errorf("records %v", rec.recs)
	}
}
