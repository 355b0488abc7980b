package hypervisor

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"
)

// Bounds on what the guest's console may put in the host's log. The guest
// is hostile: without them it could fill the host's journal (and slow
// containerd, which copies the shim's log) as fast as it can print.
const (
	guestLineMax = 512 // bytes of one line; the rest is cut
	// Lines per second, and the burst a boot may print at once.
	guestLinesPerSec      = 50
	guestLinesBurst       = 200
	guestLinesPerSecDebug = 500
	guestLinesBurstDebug  = 2000
	// agentPrefix starts the agent's own log lines (agent.Logf).
	agentPrefix = "kata-go-agent: "
)

// guestLog turns console bytes into bounded, rate-limited log records
// tagged with their source (the agent or the guest kernel/console). The
// logger carries the sandbox id. It is used by one goroutine only.
type guestLog struct {
	log     *slog.Logger
	lim     *rate.Limiter
	line    []byte
	cut     bool // the current line went past guestLineMax
	dropped int  // lines refused by the limiter since the last report
}

func newGuestLog(log *slog.Logger, debug bool) *guestLog {
	lim := rate.NewLimiter(guestLinesPerSec, guestLinesBurst)
	if debug {
		lim = rate.NewLimiter(guestLinesPerSecDebug, guestLinesBurstDebug)
	}
	return &guestLog{log: log, lim: lim, line: make([]byte, 0, guestLineMax)}
}

// Write takes console bytes in any chunking.
func (g *guestLog) Write(p []byte) {
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if room := guestLineMax - len(g.line); len(chunk) > room {
			g.line = append(g.line, chunk[:room]...)
			g.cut = true
		} else {
			g.line = append(g.line, chunk...)
		}
		if i < 0 {
			return
		}
		g.emit()
		p = p[i+1:]
	}
}

// Close logs a partial last line and any count of dropped lines.
func (g *guestLog) Close() {
	if len(g.line) > 0 {
		g.emit()
	}
	g.reportDropped()
}

func (g *guestLog) emit() {
	text := sanitizeLine(g.line)
	cut := g.cut
	g.line, g.cut = g.line[:0], false
	if strings.TrimSpace(text) == "" {
		return
	}
	if !g.lim.Allow() {
		g.dropped++
		return
	}
	g.reportDropped()
	source := "console"
	if rest, ok := strings.CutPrefix(text, agentPrefix); ok {
		source, text = "agent", rest
	}
	attrs := []slog.Attr{slog.String("source", source), slog.String("line", text)}
	if cut {
		attrs = append(attrs, slog.Bool("truncated", true))
	}
	g.log.LogAttrs(context.Background(), slog.LevelInfo, "guest", attrs...)
}

func (g *guestLog) reportDropped() {
	if g.dropped == 0 {
		return
	}
	g.log.Warn("guest log lines dropped: the guest writes faster than the shim logs",
		"dropped", g.dropped, "limit_per_sec", float64(g.lim.Limit()))
	g.dropped = 0
}

// sanitizeLine keeps printable text only: no escape sequence or control
// byte from the guest reaches a log viewer or terminal.
func sanitizeLine(b []byte) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' || (unicode.IsPrint(r) && r != utf8.RuneError) {
			return r
		}
		if r == '\r' {
			return -1
		}
		return '?'
	}, string(b))
}
