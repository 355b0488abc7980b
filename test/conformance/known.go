package main

import (
	_ "embed"
	"fmt"
	"path"
	"strings"

	"github.com/BurntSushi/toml"
)

// knownFailures lists the critest specs kata-go is expected to fail, each
// with its reason; docs/conformance.md explains them for operators.
//
//go:embed known-failures.toml
var knownFailures string

// known is one expected failure.
type known struct {
	// Test is a substring of the spec's full name.
	Test string
	// Daemons and Handlers restrict it (path.Match patterns); empty means all.
	Daemons  []string
	Handlers []string
	// Kind is "vm" (a VM runtime cannot meet it), "environment" (this
	// machine or the offline setup) or "bug" (to be fixed; Reason says how).
	Kind   string
	Reason string
}

func loadKnown() ([]known, error) {
	var f struct{ Known []known }
	if _, err := toml.Decode(knownFailures, &f); err != nil {
		return nil, fmt.Errorf("known-failures.toml: %w", err)
	}
	for i, k := range f.Known {
		if k.Test == "" || k.Reason == "" {
			return nil, fmt.Errorf("known-failures.toml: entry %d needs test and reason", i+1)
		}
		switch k.Kind {
		case "vm", "environment", "bug":
		default:
			return nil, fmt.Errorf("known-failures.toml: %q: kind %q is not vm, environment or bug", k.Test, k.Kind)
		}
	}
	return f.Known, nil
}

// match finds the entry that explains a failure of test on daemon/handler.
func match(ks []known, test, daemon, handler string) (known, bool) {
	for _, k := range ks {
		if strings.Contains(test, k.Test) && anyMatch(k.Daemons, daemon) && anyMatch(k.Handlers, handler) {
			return k, true
		}
	}
	return known{}, false
}

func anyMatch(patterns []string, s string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, s); ok {
			return true
		}
	}
	return false
}
