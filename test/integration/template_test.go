//go:build integration

package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"
)

// templateEnv is one template store and a kata-go config that uses it.
type templateEnv struct {
	d     *daemon
	dir   string // the store: [factory] template_path
	cfg   string // the config file ctr names with --runtime-config-path
	shim  string
	runs  int // ids handed out
	since int // d.Log offset the next logSince starts at
}

func newTemplateEnv(t *testing.T, d *daemon) *templateEnv {
	t.Helper()
	e := &templateEnv{d: d, dir: filepath.Join(testenv.DiskTempDir(t), "templates"), cfg: filepath.Join(t.TempDir(), "kata.toml"),
		shim: filepath.Join(testenv.RepoRoot(), "bin", "containerd-shim-kata-v2")}
	writeFile(t, e.cfg, fmt.Sprintf("[hypervisor]\nkernel = %q\ninitrd = %q\n[runtime]\nstate_root = %q\n[factory]\nenable_template = true\ntemplate_path = %q\n",
		testenv.GuestFile("vmlinux"), testenv.GuestFile("initrd.img"), d.stateRoot, e.dir))
	e.since = len(d.Log.String())
	t.Cleanup(func() {
		e.assertClean(t)
		if out, err := exec.Command(e.shim, "template", "delete", "-config", e.cfg).CombinedOutput(); err != nil {
			t.Errorf("template delete: %v %s", err, out)
		}
		if left, _ := os.ReadDir(e.dir); len(left) != 0 {
			t.Errorf("template delete left %d entries in %s", len(left), e.dir)
		}
	})
	return e
}

// id is a fresh container id.
func (e *templateEnv) id(prefix string) string {
	e.runs++
	return fmt.Sprintf("%s%d", prefix, e.runs)
}

// run is `ctr run` with the template config; extra go before the image.
func (e *templateEnv) run(extra []string, id string, args ...string) (string, string, error) {
	a := append([]string{"run", "--runtime", kataRuntime, "--runtime-config-path", e.cfg}, extra...)
	return e.d.ctr(append(append(a, image, id), args...)...)
}

// logSince is the daemon's log from the last call on.
func (e *templateEnv) logSince() string {
	l := e.d.Log.String()
	if e.since > len(l) { // the buffer was reset when full
		e.since = 0
	}
	s := l[e.since:]
	e.since = len(l)
	return s
}

// expectLog fails unless the log since the last call has each message n
// times.
func (e *templateEnv) expectLog(t *testing.T, want map[string]int) {
	t.Helper()
	l := e.logSince()
	for msg, n := range want {
		if got := strings.Count(l, "msg=\""+msg); got != n {
			t.Errorf("log has %q %d times, want %d; kata-go lines:\n%s", msg, got, n, kataLines(l))
		}
	}
}

func kataLines(log string) string {
	var b strings.Builder
	for _, l := range strings.Split(log, "\n") {
		if strings.Contains(l, "template") || strings.Contains(l, "restore") || strings.Contains(l, "cold") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// templates is the store's template directories.
func (e *templateEnv) templates(t *testing.T) []string {
	t.Helper()
	var dirs []string
	entries, _ := os.ReadDir(e.dir)
	for _, en := range entries {
		if en.IsDir() && !strings.HasSuffix(en.Name(), ".part") {
			dirs = append(dirs, filepath.Join(e.dir, en.Name()))
		}
	}
	return dirs
}

var templateEntry = regexp.MustCompile(`^[0-9a-f]{32}(\.lock)?$`)

// assertClean: the store holds templates and their lock files only (no
// part a maker left, no stray file), and no process (a template VM that
// was never stopped) names it.
func (e *templateEnv) assertClean(t *testing.T) {
	t.Helper()
	entries, _ := os.ReadDir(e.dir)
	for _, en := range entries {
		if !templateEntry.MatchString(en.Name()) {
			t.Errorf("template store holds %s", en.Name())
		}
	}
	if vms, _ := filepath.Glob("/run/kata-go-template-*"); len(vms) > 0 {
		t.Errorf("a template VM's run directory was left: %v", vms)
	}
	deadline := time.Now().Add(10 * time.Second)
	for p := processesMatching(e.dir); len(p) > 0; p = processesMatching(e.dir) {
		if time.Now().After(deadline) {
			t.Errorf("processes still use the template store: %v", p)
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTemplate: pods restored from a VM template behave as cold-booted
// ones, differ from each other, cannot touch the template, and a template
// that cannot be used costs a cold boot, never a pod.
func TestTemplate(t *testing.T) {
	d := startDaemon(t, daemons()[len(daemons())-1])
	for _, sc := range []struct {
		name string
		fn   func(*testing.T, *daemon)
	}{
		{"FirstRunMakesItThenPodsRestore", testTemplateRestores},
		{"TwoPodsDiffer", testTemplateSiblings},
		{"PodNetwork", testTemplateNetwork},
		{"TemplateUntouchedByPods", testTemplateUntouched},
		{"BadTemplateMeansColdBoot", testTemplateBad},
		{"DeleteWhilePodsRun", testTemplateDeleteLive},
		{"FirstPodsAtOnce", testTemplateRace},
		{"MemoryFSStoreRefused", testTemplateMemoryFS},
	} {
		t.Run(sc.name, func(t *testing.T) {
			t.Cleanup(func() { d.assertClean(t) })
			sc.fn(t, d)
		})
	}
}

func testTemplateRestores(t *testing.T, d *daemon) {
	e := newTemplateEnv(t, d)
	host, _ := exec.Command("uname", "-r").Output()
	for i := 0; i < 2; i++ {
		out, errOut, err := e.run([]string{"--rm"}, e.id("uname"), "uname", "-r")
		if err != nil || strings.TrimSpace(out) == "" || out == string(host) {
			t.Fatalf("run %d: uname -r %q (host %q): %v %s", i, out, host, err, errOut)
		}
	}
	// The template's guest ran its warm-up container before it was saved.
	if l := e.d.Log.String()[e.since:]; strings.Count(l, "template warm-up: a container ran") != 1 {
		t.Errorf("the template's guest did not report one warm-up container; kata-go lines:\n%s", kataLines(l))
	}
	e.expectLog(t, map[string]int{"VM template made": 1, "VM restored from template": 2, "VM template restore failed": 0})
	if n := len(e.templates(t)); n != 1 {
		t.Fatalf("%d templates after two runs, want 1", n)
	}

	// stdin, a bind volume both ways, exec: as in a cold pod.
	vol := t.TempDir()
	writeFile(t, filepath.Join(vol, "in"), "from-host\n")
	ioID := e.id("io")
	defer d.remove(ioID) // if the run fails half-way
	out, errOut, err := d.ctrIn([]byte("via-stdin\n"), "run", "--rm", "--runtime", kataRuntime, "--runtime-config-path", e.cfg,
		"--mount", "type=bind,src="+vol+",dst=/vol,options=rbind:rw", image, ioID,
		"sh", "-c", "cat /vol/in; cat; echo from-guest > /vol/out")
	if err != nil || out != "from-host\nvia-stdin\n" {
		t.Fatalf("stdin and volume: %q %v %s", out, err, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(vol, "out")); err != nil || string(b) != "from-guest\n" {
		t.Fatalf("the guest's write to the volume: %q %v", b, err)
	}
	id := e.id("exec")
	if _, errOut, err := e.run([]string{"-d"}, id, "sleep", "1000"); err != nil {
		t.Fatalf("run -d: %v %s", err, errOut)
	}
	defer d.remove(id)
	d.waitStatus(t, id, "RUNNING")
	if out, errOut, err := d.ctr("task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo exec-ok; exit 3"); exitCode(err) != 3 || out != "exec-ok\n" {
		t.Fatalf("exec: %q exit %d %s", out, exitCode(err), errOut)
	}
	e.expectLog(t, map[string]int{"VM template made": 0, "VM restored from template": 2})
}

// siblingFacts is what must differ (or agree with the host) between two
// pods restored from one template.
func siblingFacts(t *testing.T, d *daemon, id string) (hostname, random, uuid string, clock time.Time, before, after time.Time) {
	t.Helper()
	exec1 := func(eid string, args ...string) string {
		out, errOut, err := d.ctr(append([]string{"task", "exec", "--exec-id", eid, id}, args...)...)
		if err != nil {
			t.Fatalf("%s: %v %s", strings.Join(args, " "), err, errOut)
		}
		return strings.TrimSpace(out)
	}
	hostname = exec1("h", "hostname")
	random = exec1("r", "sh", "-c", "head -c 32 /dev/urandom | od -An -tx1")
	uuid = exec1("u", "cat", "/proc/sys/kernel/random/uuid")
	before = time.Now()
	out := exec1("c", "adjtimex")
	after = time.Now()
	clock, err := adjtimexTime(out)
	if err != nil {
		t.Fatal(err)
	}
	return hostname, random, uuid, clock, before, after
}

func testTemplateSiblings(t *testing.T, d *daemon) {
	e := newTemplateEnv(t, d)
	ids := []string{e.id("sib"), e.id("sib")}
	for _, id := range ids {
		if _, errOut, err := e.run([]string{"-d", "--hostname", "host-" + id}, id, "sleep", "1000"); err != nil {
			t.Fatalf("run -d %s: %v %s", id, err, errOut)
		}
		defer d.remove(id)
		d.waitStatus(t, id, "RUNNING")
	}
	e.expectLog(t, map[string]int{"VM template made": 1, "VM restored from template": 2})
	const slack = 10 * time.Millisecond
	var hosts, randoms, uuids []string
	for _, id := range ids {
		h, r, u, clock, before, after := siblingFacts(t, d, id)
		if h != "host-"+id {
			t.Errorf("%s: hostname %q", id, h)
		}
		if clock.Before(before.Add(-slack)) || clock.After(after.Add(slack)) {
			t.Errorf("%s: guest clock %s outside the host's [%s, %s] ± %s", id, clock.Format(time.StampMicro),
				before.Format(time.StampMicro), after.Format(time.StampMicro), slack)
		}
		hosts, randoms, uuids = append(hosts, h), append(randoms, r), append(uuids, u)
	}
	for what, v := range map[string][]string{"hostname": hosts, "urandom bytes": randoms, "random uuid": uuids} {
		if v[0] == v[1] {
			t.Errorf("both pods from one template have the same %s: %q", what, v[0])
		}
	}
}

func testTemplateNetwork(t *testing.T, d *daemon) {
	e := newTemplateEnv(t, d)
	pod, peer := podNetwork(t)
	nsPath := "/var/run/netns/" + pod
	id := e.id("net")
	if _, errOut, err := e.run([]string{"-d", "--with-ns", "network:" + nsPath}, id, "sleep", "1000"); err != nil {
		t.Fatalf("run -d: %v %s", err, errOut)
	}
	defer d.remove(id)
	d.waitStatus(t, id, "RUNNING")
	e.expectLog(t, map[string]int{"VM template made": 1, "VM restored from template": 1})
	podMAC := strings.TrimSpace(ip(t, "netns", "exec", pod, "cat", "/sys/class/net/eth0/address"))
	out, errOut, err := d.ctr("task", "exec", "--exec-id", "mac", id, "cat", "/sys/class/net/eth0/address")
	if err != nil || strings.TrimSpace(out) != podMAC {
		t.Fatalf("guest MAC %q, want the pod's %q (the template's was 02:6b:67:00:00:00): %v %s", out, podMAC, err, errOut)
	}
	out, errOut, err = d.ctr("task", "exec", "--exec-id", "ping", id, "ping", "-c", "2", "-W", "10", "10.199.0.1")
	if err != nil || !strings.Contains(out, "2 packets received") {
		t.Fatalf("guest -> peer: %v %s %s", err, out, errOut)
	}
	if o, err := exec.Command("ip", "netns", "exec", peer, "/bin/busybox", "ping", "-c", "2", "-W", "10", "10.199.0.2").CombinedOutput(); err != nil {
		t.Fatalf("peer -> guest: %v %s", err, o)
	}
}

// fileFacts is a file's content hash and its allocated bytes.
func fileFacts(t *testing.T, path string) (string, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	// Written back first: on a disk filesystem (t.TempDir here is ext4)
	// the template's freshly written pages are allocated at writeback, and
	// ext4 may add an extent-tree block then (seen: +4096 bytes while pods
	// ran, content unchanged), which is not a pod's doing.
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), st.Blocks * 512
}

func testTemplateUntouched(t *testing.T, d *daemon) {
	e := newTemplateEnv(t, d)
	if out, err := exec.Command(e.shim, "template", "create", "-config", e.cfg, "-nics", "0").CombinedOutput(); err != nil {
		t.Fatalf("template create: %v %s", err, out)
	}
	ts := e.templates(t)
	if len(ts) != 1 {
		t.Fatalf("%d templates after create", len(ts))
	}
	mem := filepath.Join(ts[0], "memory")
	sum, alloc := fileFacts(t, mem)
	// Two pods fill guest memory with random bytes, and free it again
	// (a balloon or free page reporting would discard it).
	for i := 0; i < 2; i++ {
		out, errOut, err := e.run([]string{"--rm"}, e.id("fill"), "sh", "-c",
			"head -c 40000000 /dev/urandom > /dev/shm/fill && rm /dev/shm/fill && echo filled")
		if err != nil || out != "filled\n" {
			t.Fatalf("fill: %q %v %s", out, err, errOut)
		}
	}
	// `template create` made it, outside containerd's log.
	e.expectLog(t, map[string]int{"VM template made": 0, "VM restored from template": 2})
	if s2, a2 := fileFacts(t, mem); s2 != sum || a2 != alloc {
		t.Fatalf("pods changed the template's memory: sha256 %s -> %s, allocated %d -> %d bytes", sum, s2, alloc, a2)
	}
}

// testTemplateBad: a damaged state file, a key that does not match its
// directory, and a state QEMU cannot load (with a matching checksum, as
// a truncated write would not give) each cost a cold boot or a new
// template, with a log line saying why; no pod fails.
func testTemplateBad(t *testing.T, d *daemon) {
	e := newTemplateEnv(t, d)
	if out, errOut, err := e.run([]string{"--rm"}, e.id("first"), "true"); err != nil {
		t.Fatalf("first run: %v %s %s", err, out, errOut)
	}
	e.expectLog(t, map[string]int{"VM template made": 1, "VM restored from template": 1})
	dir := e.templates(t)[0]
	state, meta := filepath.Join(dir, "state"), filepath.Join(dir, "meta.json")
	editMeta := func(f func(m map[string]any)) {
		b, err := os.ReadFile(meta)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]any{}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.UseNumber() // inode and device numbers do not fit a float64
		if err := dec.Decode(&m); err != nil {
			t.Fatal(err)
		}
		f(m)
		if b, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
		writeFile(t, meta, string(b))
	}
	run := func(what string) {
		t.Helper()
		if out, errOut, err := e.run([]string{"--rm"}, e.id("bad"), "echo", "ok"); err != nil || out != "ok\n" {
			t.Fatalf("run with %s: %q %v %s", what, out, err, errOut)
		}
	}

	// A flipped byte: the checksum catches it, a new template is made.
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	writeFile(t, state, string(b))
	run("a damaged state file")
	e.expectLog(t, map[string]int{"VM template unusable, making a new one": 1, "VM template made": 1, "VM restored from template": 1})

	// A key that is not the one the directory is named for.
	editMeta(func(m map[string]any) { m["key"].(map[string]any)["memory_mib"] = 4096 })
	run("a mismatched key")
	e.expectLog(t, map[string]int{"VM template unusable, making a new one": 1, "VM template made": 1, "VM restored from template": 1})

	// A state whose checksum matches but that QEMU refuses.
	junk := strings.Repeat("not a migration stream ", 100)
	writeFile(t, state, junk)
	sum := sha256.Sum256([]byte(junk))
	editMeta(func(m map[string]any) { m["state_sha256"] = hex.EncodeToString(sum[:]) })
	run("a state QEMU cannot load")
	e.expectLog(t, map[string]int{"VM template restore failed, booting cold": 1, "VM restored from template": 0})
}

func testTemplateDeleteLive(t *testing.T, d *daemon) {
	e := newTemplateEnv(t, d)
	id := e.id("live")
	if _, errOut, err := e.run([]string{"-d"}, id, "sleep", "1000"); err != nil {
		t.Fatalf("run -d: %v %s", err, errOut)
	}
	defer d.remove(id)
	d.waitStatus(t, id, "RUNNING")
	e.expectLog(t, map[string]int{"VM template made": 1, "VM restored from template": 1})
	if out, err := exec.Command(e.shim, "template", "delete", "-config", e.cfg).CombinedOutput(); err != nil {
		t.Fatalf("template delete: %v %s", err, out)
	}
	if left, _ := os.ReadDir(e.dir); len(left) != 0 {
		t.Fatalf("template delete left %d entries", len(left))
	}
	// The pod's VM still maps the deleted memory file: it keeps working,
	// memory it had not touched included.
	if out, errOut, err := d.ctr("task", "exec", "--exec-id", "after", id, "sh", "-c",
		"head -c 30000000 /dev/urandom > /dev/shm/f && wc -c < /dev/shm/f"); err != nil || strings.TrimSpace(out) != "30000000" {
		t.Fatalf("exec after the template was deleted: %q %v %s", out, err, errOut)
	}
	if out, errOut, err := e.run([]string{"--rm"}, e.id("next"), "echo", "ok"); err != nil || out != "ok\n" {
		t.Fatalf("run after delete: %q %v %s", out, err, errOut)
	}
	e.expectLog(t, map[string]int{"VM template made": 1, "VM restored from template": 1})
}

// testTemplateRace: three pods start at once with no template yet. One
// shim makes it, the others do not wait for it (they boot cold, saying
// why) and none fails; exactly one whole template is left.
func testTemplateRace(t *testing.T, d *daemon) {
	e := newTemplateEnv(t, d)
	ids := []string{e.id("race"), e.id("race"), e.id("race")}
	errs := make(chan error, len(ids))
	for _, id := range ids {
		defer d.remove(id)
		go func(id string) {
			out, errOut, err := e.run([]string{"--rm"}, id, "echo", "ok")
			if err != nil || out != "ok\n" {
				err = fmt.Errorf("%s: %q %v %s", id, out, err, errOut)
			}
			errs <- err
		}(id)
	}
	for range ids {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	l := e.logSince()
	if n := strings.Count(l, `msg="VM template made"`); n != 1 {
		t.Errorf("%d templates made by 3 pods at once, want 1:\n%s", n, kataLines(l))
	}
	// The maker restores from what it made; each other pod either found
	// the maker at work (and booted cold, saying so) or came late enough
	// to restore.
	if restored, busy := strings.Count(l, `msg="VM restored from template"`), strings.Count(l, "another shim is making this template"); restored+busy != len(ids) {
		t.Errorf("of 3 pods, %d restored and %d found the maker busy, want 3 in all:\n%s", restored, busy, kataLines(l))
	}
	if n := len(e.templates(t)); n != 1 {
		t.Fatalf("%d templates in the store, want 1", n)
	}
}

// testTemplateMemoryFS: a store on tmpfs is refused, because there every
// page a clone's guest first touches would be allocated in the shared
// memory file and kept (docs/templates.md). `template create` fails naming
// tmpfs; a pod boots cold, with a warning, and succeeds.
func testTemplateMemoryFS(t *testing.T, d *daemon) {
	e := newTemplateEnv(t, d)
	shm, err := os.MkdirTemp("/dev/shm", "kgo-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shm) })
	b, err := os.ReadFile(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	onShm := filepath.Join(shm, "templates")
	writeFile(t, e.cfg, strings.Replace(string(b), fmt.Sprintf("%q", e.dir), fmt.Sprintf("%q", onShm), 1))
	e.dir = onShm
	out, err := exec.Command(e.shim, "template", "create", "-config", e.cfg, "-nics", "0").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is on tmpfs") {
		t.Fatalf("template create on tmpfs: %v %s; want a failure naming tmpfs", err, out)
	}
	if out, errOut, err := e.run([]string{"--rm"}, e.id("shm"), "true"); err != nil {
		t.Fatalf("a pod with a tmpfs template store: %q %v %s", out, err, errOut)
	}
	e.expectLog(t, map[string]int{"VM template store refused": 1, "VM boots cold": 1, "VM template made": 0, "VM restored from template": 0})
	if ts := e.templates(t); len(ts) != 0 {
		t.Fatalf("templates made on tmpfs: %v", ts)
	}
}
