package main

import (
	"bufio"
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// result is one critest spec's outcome.
type result struct {
	Name    string
	Status  string // passed, failed, skipped, pending, panicked, timedout, interrupted
	Message string
}

func (r result) failed() bool {
	switch r.Status {
	case "passed", "skipped", "pending":
		return false
	}
	return true
}

// runCritest runs the suite against endpoint with handler, streaming one
// line per spec to progress and everything to a log, and returns each
// spec's result from the JUnit report.
func runCritest(ctx context.Context, bin, endpoint, handler, dir string, extra []string, progress io.Writer) ([]result, error) {
	report := filepath.Join(dir, "junit.xml")
	logPath := filepath.Join(dir, "critest.log")
	log, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	args := []string{
		"-runtime-endpoint", "unix://" + endpoint, "-image-endpoint", "unix://" + endpoint,
		"-ginkgo.junit-report", report, "-ginkgo.no-color", "-ginkgo.timeout", "3h",
		// No /etc/crictl.yaml of the host may redirect it.
		"-config", filepath.Join(dir, "crictl.yaml"),
	}
	if handler != "" {
		args = append(args, "-runtime-handler", handler)
	}
	cmd := exec.CommandContext(ctx, bin, append(args, extra...)...)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start critest: %w", err)
	}
	// Ginkgo marks each spec that ran with a "•" as it ends, on one long
	// line; failures also get a "• [FAILED]" line of their own.
	r := bufio.NewReader(io.TeeReader(out, log))
	var line strings.Builder
	done := 0
	for {
		c, _, err := r.ReadRune()
		if err != nil {
			break
		}
		if c == '•' {
			if done++; done%20 == 0 {
				fmt.Fprintf(progress, "  %d specs run\n", done)
			}
		}
		if c != '\n' {
			line.WriteRune(c)
			continue
		}
		l := line.String()
		line.Reset()
		if strings.HasPrefix(l, "Ran ") || strings.HasPrefix(l, "• [FAILED]") {
			fmt.Fprintln(progress, "  "+l)
		}
	}
	// critest exits non-zero when a spec fails; the report says which.
	runErr := cmd.Wait()
	results, err := readJUnit(report)
	if err != nil {
		return nil, fmt.Errorf("critest (%v) left no report: %w; see %s", runErr, err, logPath)
	}
	return results, nil
}

type junitSuites struct {
	Suites []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Status  string `xml:"status,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// readJUnit reads ginkgo's JUnit report, leaving out its suite-level
// setup nodes (they are not specs).
func readJUnit(path string) ([]result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var s junitSuites
	if err := xml.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	var rs []result
	for _, suite := range s.Suites {
		for _, c := range suite.Cases {
			if !strings.HasPrefix(c.Name, "[It]") {
				continue
			}
			r := result{Name: strings.TrimSpace(strings.TrimPrefix(c.Name, "[It]")), Status: c.Status}
			if c.Failure != nil {
				r.Message = c.Failure.Message
			}
			rs = append(rs, r)
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].Name < rs[j].Name })
	return rs, nil
}
