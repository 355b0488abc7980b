package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
)

// summarize prints counts and each failure with its known reason (or
// UNEXPECTED), writes the same as Markdown to reportPath, and says whether
// the run met the bar: no unexpected failure, no listed failure passing
// (the list must shrink when kata-go gets better) and nothing left behind.
func summarize(w io.Writer, reportPath string, outcomes []outcome, ks []known) (bool, error) {
	ok := true
	var md bytes.Buffer
	fmt.Fprintln(&md, "| daemon | handler | passed | failed | skipped | time |")
	fmt.Fprintln(&md, "|---|---|---|---|---|---|")
	var details bytes.Buffer
	for _, o := range outcomes {
		var passed, failed, skipped int
		for _, r := range o.results {
			switch {
			case r.Status == "passed":
				passed++
			case r.failed():
				failed++
			default:
				skipped++
			}
		}
		fmt.Fprintf(w, "%s handler %s: %d passed, %d failed, %d skipped of %d specs (%s)\n",
			o.daemon, o.handler, passed, failed, skipped, len(o.results), o.elapsed.Round(1e9))
		fmt.Fprintf(&md, "| %s | %s | %d | %d | %d | %s |\n", o.daemon, o.handler, passed, failed, skipped, o.elapsed.Round(1e9))
		fmt.Fprintf(&details, "\n### %s, handler %s\n\n", o.daemon, o.handler)
		for _, r := range o.results {
			k, isKnown := match(ks, r.Name, o.daemon, o.handler)
			switch {
			case r.failed() && isKnown:
				fmt.Fprintf(w, "  known failure (%s): %s\n    %s\n", k.Kind, r.Name, k.Reason)
				fmt.Fprintf(&details, "- known (%s): %s — %s\n", k.Kind, r.Name, k.Reason)
			case r.failed():
				ok = false
				fmt.Fprintf(w, "  UNEXPECTED failure: %s\n    %s\n", r.Name, firstLine(r.Message))
				fmt.Fprintf(&details, "- UNEXPECTED: %s — `%s`\n", r.Name, firstLine(r.Message))
			case r.Status == "passed" && isKnown:
				ok = false
				fmt.Fprintf(w, "  listed as known but passed, take it off known-failures.toml: %s\n", r.Name)
				fmt.Fprintf(&details, "- passes though listed: %s\n", r.Name)
			}
		}
		if len(o.strayPods) > 0 {
			fmt.Fprintf(w, "  critest left %d pod(s), removed through CRI before the leftover check: %s\n", len(o.strayPods), strings.Join(o.strayPods, " "))
			fmt.Fprintf(&details, "- critest left %d pod(s) (removed through CRI before the leftover check)\n", len(o.strayPods))
		}
		for _, l := range o.leftovers {
			ok = false
			fmt.Fprintf(w, "  LEFT BEHIND: %s\n", l)
			fmt.Fprintf(&details, "- left behind: %s\n", l)
		}
	}
	md.Write(details.Bytes())
	if err := os.WriteFile(reportPath, md.Bytes(), 0o644); err != nil {
		return false, err
	}
	fmt.Fprintln(w, "report:", reportPath)
	return ok, nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}
