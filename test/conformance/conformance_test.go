package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestKnownFailuresFileIsValid(t *testing.T) {
	ks, err := loadKnown()
	if err != nil {
		t.Fatal(err)
	}
	if len(ks) == 0 {
		t.Fatal("no entries: the digest-pinned image alone can never pass offline")
	}
}

func TestMatchHonoursDaemonAndHandler(t *testing.T) {
	ks := []known{{Test: "port forward", Daemons: []string{"containerd-1.*"}, Handlers: []string{"kata"}, Kind: "vm", Reason: "r"}}
	if _, ok := match(ks, "runtime should support port forward [Conformance]", "containerd-1.6", "kata"); !ok {
		t.Error("entry does not match its own daemon and handler")
	}
	if _, ok := match(ks, "runtime should support port forward [Conformance]", "containerd-2.4", "kata"); ok {
		t.Error("entry for containerd-1.* matched containerd-2.4")
	}
	if _, ok := match(ks, "runtime should support port forward [Conformance]", "containerd-1.6", "runc"); ok {
		t.Error("entry for kata matched runc")
	}
}

const sampleJUnit = `<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="4" failures="1">
  <testsuite name="CRI validation" tests="4">
    <testcase name="[BeforeSuite]" status="passed"></testcase>
    <testcase name="[It] [k8s.io] A works" status="passed"></testcase>
    <testcase name="[It] [k8s.io] B breaks" status="failed"><failure message="boom&#xA;detail" type="failed"></failure></testcase>
    <testcase name="[It] [k8s.io] C unsupported" status="skipped"><skipped message="skipped"></skipped></testcase>
    <testcase name="[It] [k8s.io] D known" status="failed"><failure message="vm" type="failed"></failure></testcase>
  </testsuite>
</testsuites>`

func TestReportCountsAndVerdict(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "junit.xml")
	if err := os.WriteFile(p, []byte(sampleJUnit), 0o644); err != nil {
		t.Fatal(err)
	}
	rs, err := readJUnit(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 4 {
		t.Fatalf("%d results, want 4 specs (suite nodes are not specs)", len(rs))
	}
	ks := []known{{Test: "D known", Kind: "vm", Reason: "a VM cannot"}}
	var out bytes.Buffer
	ok, err := summarize(&out, filepath.Join(dir, "r.md"), []outcome{{daemon: "containerd-2.4", handler: "kata", results: rs}}, ks)
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		t.Error("run with an unexpected failure judged ok")
	}
	s := out.String()
	for _, want := range []string{"1 passed, 2 failed, 1 skipped of 4", "UNEXPECTED failure: [k8s.io] B breaks", "boom", "known failure (vm): [k8s.io] D known"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	ok, _ = summarize(&out, filepath.Join(dir, "r.md"), []outcome{{daemon: "d", handler: "kata", results: rs[3:], leftovers: []string{"qemu 123"}}}, ks)
	if ok {
		t.Error("run that left a VM behind judged ok")
	}
	ok, _ = summarize(&out, filepath.Join(dir, "r.md"), []outcome{{daemon: "d", handler: "kata", results: rs[3:]}}, ks)
	if !ok {
		t.Errorf("run with only known failures judged failed:\n%s", out.String())
	}
	passing := []result{{Name: "[k8s.io] D known", Status: "passed"}}
	ok, _ = summarize(&out, filepath.Join(dir, "r.md"), []outcome{{daemon: "d", handler: "kata", results: passing}}, ks)
	if ok {
		t.Error("a listed failure that now passes was not flagged")
	}
}
