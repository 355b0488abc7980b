//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"

	"github.com/kata-go/kata-go/internal/ctrenv"
)

// The hostile-guest suite: a privileged container (root in the guest, all
// capabilities, every device) attacks what the host shares with its VM.
// It runs on one daemon: what it tests is the shim and the VM, which do not
// change with containerd's version, and each run costs a VM boot and 50
// containers under TCG.
func TestHostileGuest(t *testing.T) {
	d := startCRI(t, daemons()[0])
	t.Run("ShareSkeleton", func(t *testing.T) { testShareSkeleton(t, d) })
	t.Run("PlantRace", func(t *testing.T) { testPlantRace(t, d) })
	if err := d.WaitClean(20 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// mountShare is the shell that mounts the pod's share inside a privileged
// container, as an attacker would (virtio-fs, or 9p where configured).
const mountShare = `mkdir -p /mnt/share
mount -t virtiofs kataShared /mnt/share 2>/dev/null || mount -t 9p -o trans=virtio,version=9p2000.L kataShared /mnt/share || { echo MOUNT-FAILED; exit 1; }
S=/mnt/share
try() { if "$@" 2>/dev/null; then echo "ALLOWED: $*"; else echo "REFUSED: $*"; fi; }
`

type ctrOpts struct {
	privileged bool
	mounts     []map[string]any
}

// startContainer creates and starts a container, returning its id or the
// error crictl gave.
func startContainer(t *testing.T, d *daemon, podID, pod, name string, o ctrOpts, cmd ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	cfg := writeJSON(t, filepath.Join(dir, "ctr.json"), map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": ctrenv.Image},
		"command":  cmd,
		"log_path": name + ".log",
		"mounts":   o.mounts,
		"linux":    map[string]any{"security_context": map[string]any{"privileged": o.privileged}},
	})
	out, err := crictlErr(d, "create", podID, cfg, pod)
	if err != nil {
		return "", fmt.Errorf("create %s: %w: %s", name, err, out)
	}
	id := strings.TrimSpace(out)
	if out, err := crictlErr(d, "start", id); err != nil {
		return id, fmt.Errorf("start %s: %w: %s", name, err, out)
	}
	return id, nil
}

// logsUntil waits for a container's log to contain marker.
func logsUntil(t *testing.T, d *daemon, id, marker string, limit time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		out, _ := crictlErr(d, "logs", id)
		if strings.Contains(out, marker) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s: no %q in its log after %s:\n%s", id, marker, limit, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// podStateDir is the shim's state directory of the only pod running.
func podStateDir(t *testing.T, d *daemon) string {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(d.stateRoot, "*", "sandbox.json"))
	if len(dirs) != 1 {
		t.Fatalf("want one pod state dir under %s, found %v", d.stateRoot, dirs)
	}
	return filepath.Dir(dirs[0])
}

// testShareSkeleton: the attacker mounts the share and tries to create,
// rename, remove and link at its root and in every container's directory,
// its own and its neighbours'. All refused; its own rootfs stays writable.
func testShareSkeleton(t *testing.T, d *daemon) {
	podID, pod := startPod(t, d, "skeleton", true)
	vol := t.TempDir()
	hosts := filepath.Join(t.TempDir(), "file")
	writeFile(t, hosts, "volume file\n")
	victim, err := startContainer(t, d, podID, pod, "victim", ctrOpts{mounts: []map[string]any{
		{"container_path": "/vol", "host_path": vol}, {"container_path": "/volfile", "host_path": hosts},
	}}, "sleep", "1000")
	if err != nil {
		t.Fatal(err)
	}
	script := mountShare + `echo MOUNTED
for d in $S $S/*; do
  try touch $d/planted
  try mkdir $d/planted-dir
  try ln -s /etc/passwd $d/planted-link
  try mknod $d/planted-fifo p
  for e in $d/*; do
    try mv $e $e.moved
    try ln $e $d/planted-hardlink
  done
  for e in $d/mounts/*; do
    [ -e "$e" ] || continue
    try rm -f $e
    try mv $e $e.moved
    try ln -s /etc/shadow $e.link
    try ln $e $d/mounts/planted-hardlink
  done
  [ -d $d/mounts ] && try rmdir $d/mounts
done
echo mine > /own-rootfs-file && echo OWN-ROOTFS-WRITABLE
echo DONE
sleep 1000`
	attacker, err := startContainer(t, d, podID, pod, "attacker", ctrOpts{privileged: true}, "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	out := logsUntil(t, d, attacker, "DONE", 120*time.Second)
	if !strings.Contains(out, "MOUNTED") {
		t.Fatalf("the attacker could not mount the share, so the test proves nothing:\n%s", out)
	}
	refused := strings.Count(out, "REFUSED:")
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "ALLOWED:") {
			t.Errorf("guest changed the share's skeleton: %s", l)
		}
	}
	// pause, victim and attacker each have rootfs; the victim two volumes.
	if refused < 3*4+2*4 {
		t.Errorf("only %d attempts were made; the attacker did not see the pod's containers:\n%s", refused, out)
	}
	if !strings.Contains(out, "OWN-ROOTFS-WRITABLE") {
		t.Errorf("the attacker could not write its own rootfs:\n%s", out)
	}
	// On the host nothing was planted anywhere in the pod's state.
	state := podStateDir(t, d)
	_ = filepath.Walk(state, func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.Contains(fi.Name(), "planted") || strings.HasSuffix(p, ".moved") {
			t.Errorf("host state holds %s", p)
		}
		return nil
	})
	// The victim still has its volumes.
	if o, err := crictlErr(d, "exec", "-s", victim, "cat", "/volfile"); err != nil || !strings.Contains(o, "volume file") {
		t.Errorf("victim's file volume after the attack: %v %q", err, o)
	}
	crictl(t, d, "stopp", podID)
	crictl(t, d, "rmp", podID)
}

// canary is a host file or directory the attacker aims its links at; it
// must come out of the test with the same inode and content.
type canary struct {
	path    string
	ino     uint64
	content string
}

func newCanary(t *testing.T, dir bool) canary {
	t.Helper()
	base := t.TempDir()
	c := canary{path: filepath.Join(base, "canary-file"), content: "canary\n"}
	if dir {
		c.path = filepath.Join(base, "canary-dir")
		if err := os.Mkdir(c.path, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(c.path, "inside"), c.content)
	} else {
		writeFile(t, c.path, c.content)
	}
	c.ino = inode(t, c.path)
	return c
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Ino
}

func (c canary) check(t *testing.T) {
	t.Helper()
	if got := inode(t, c.path); got != c.ino {
		t.Errorf("canary %s: inode %d, was %d", c.path, got, c.ino)
	}
	read := c.path
	if fi, _ := os.Stat(c.path); fi != nil && fi.IsDir() {
		read = filepath.Join(c.path, "inside")
		if ents, _ := os.ReadDir(c.path); len(ents) != 1 {
			t.Errorf("canary dir %s holds %d entries, had 1", c.path, len(ents))
		}
	}
	if b, err := os.ReadFile(read); err != nil || string(b) != c.content {
		t.Errorf("canary %s: %q %v", read, b, err)
	}
	if mps := ctrenv.MountsUnder(filepath.Dir(c.path)); len(mps) > 0 {
		t.Errorf("something is mounted on a canary: %v", mps)
	}
}

// plantRaceContainers is how many containers the race creates (the
// issue's figure). Under TCG each costs about a second.
const plantRaceContainers = 50

// testPlantRace: while an attacker plants links named like the next
// containers' mount targets as fast as it can, the test creates 50
// containers in its pod, each with a directory volume, a file volume and
// the pod's writable hosts file. No host path outside the pod's state
// changes, and every create succeeds or fails with a named error.
func testPlantRace(t *testing.T, d *daemon) {
	podID, pod := startPod(t, d, "race", true)
	file := newCanary(t, false)
	dir := newCanary(t, true)
	script := mountShare + fmt.Sprintf(`echo MOUNTED
n=0
while :; do
  for c in $S/*; do
    for i in 0 1 2 3 4 5 6; do
      ln -s %[1]s $c/mounts/$i-etc_hosts 2>/dev/null
      ln -s %[1]s $c/mounts/$i-data 2>/dev/null
      ln -s %[2]s $c/mounts/$i-vol 2>/dev/null
    done
    ln -s %[2]s $c/rootfs 2>/dev/null
    mkdir $c/mounts 2>/dev/null
  done
  ln -s %[2]s $S/next 2>/dev/null
  n=$((n+1)); echo ROUNDS $n
done`, file.path, dir.path)
	attacker, err := startContainer(t, d, podID, pod, "planter", ctrOpts{privileged: true}, "sh", "-c", script)
	if err != nil {
		t.Fatal(err)
	}
	logsUntil(t, d, attacker, "MOUNTED", 60*time.Second)

	vol := t.TempDir()
	volFile := filepath.Join(t.TempDir(), "data")
	writeFile(t, volFile, "data\n")
	ok := 0
	for i := 0; i < plantRaceContainers; i++ {
		id, err := startContainer(t, d, podID, pod, fmt.Sprintf("c%d", i), ctrOpts{mounts: []map[string]any{
			{"container_path": "/vol", "host_path": vol},
			{"container_path": "/data", "host_path": volFile},
		}}, "sh", "-c", "echo 10.9.9.9 race >> /etc/hosts && echo ok >> /vol/c && cat /data >/dev/null")
		if err != nil {
			// A refusal must say what it refused; nothing may be silent.
			if !strings.Contains(err.Error(), "exists already") && !strings.Contains(err.Error(), "symlink") {
				t.Errorf("container %d failed without a named reason: %v", i, err)
			}
		} else {
			ok++
		}
		if id != "" {
			_, _ = crictlErr(d, "stop", "-t", "0", id)
			_, _ = crictlErr(d, "rm", id)
		}
	}
	out, _ := crictlErr(d, "logs", attacker)
	t.Logf("%d of %d containers started while the planter ran (%s)", ok, plantRaceContainers, lastLine(out, "ROUNDS"))
	if ok == 0 {
		t.Errorf("no container started at all under the race")
	}
	if lastLine(out, "ROUNDS") == "ROUNDS none" {
		t.Errorf("the planter never finished a round, so there was no race:\n%s", out)
	}
	file.check(t)
	dir.check(t)
	if b, _ := os.ReadFile(volFile); string(b) != "data\n" {
		t.Errorf("file volume changed: %q", b)
	}
	crictl(t, d, "stopp", podID)
	crictl(t, d, "rmp", podID)
}

func lastLine(out, prefix string) string {
	last := prefix + " none"
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			last = l
		}
	}
	return last
}

// From inside a container the agent's vsock port is closed: CID 1 (guest
// loopback, compiled out) and CID 2 (the host, which never listens there).
// This host has no /dev/vhost-vsock, so its VMs have no vsock device and
// the agent channel is virtio-serial behind a 0600 socket; the part runs
// where a host has vhost-vsock.
func TestHostileVsock(t *testing.T) {
	if !testenv.Exists("/dev/vhost-vsock") {
		t.Skip("no /dev/vhost-vsock on this host: the VM has no vsock device, so there is no vsock port to attack (the agent is on virtio-serial behind a root-only 0600 socket, tested in TestFaults/SocketsPrivate)")
	}
	d := startDaemon(t, daemons()[0])
	bin := buildStatic(t, "./test/integration/testdata/vsockdial")
	for _, cid := range []string{"1", "2"} {
		out, _, err := runRm(d, "vsock-"+cid, "--mount", "type=bind,src="+bin+",dst=/vsockdial,options=rbind:ro", image, "/vsockdial", cid, "1024")
		if err == nil || !strings.Contains(out, "refused") || strings.Contains(out, "CONNECTED") {
			t.Errorf("vsock CID %s port 1024 from a container: %v %q", cid, err, out)
		}
	}
}

// buildStatic builds a Go test program into a static binary.
func buildStatic(t *testing.T, pkg string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(pkg))
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = testenv.RepoRoot()
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, b)
	}
	return out
}

// testTaskPidIsVMM: the pid containerd shows for a task is a host process
// of the pod (its QEMU), never a guest pid that names some unrelated host
// process.
func testTaskPidIsVMM(t *testing.T, d *daemon) {
	if _, e, err := d.ctr("run", "-d", "--runtime", kataRuntime, image, "pidvmm", "sleep", "1000"); err != nil {
		t.Fatalf("run: %v %s", err, e)
	}
	defer d.remove("pidvmm")
	out, e, err := d.ctr("task", "ls")
	if err != nil {
		t.Fatalf("task ls: %v %s", err, e)
	}
	pid := 0
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) >= 3 && f[0] == "pidvmm" {
			pid, _ = strconv.Atoi(f[1])
		}
	}
	if pid <= 0 {
		t.Fatalf("no pid for pidvmm in:\n%s", out)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatalf("task pid %d is no host process: %v", pid, err)
	}
	if !strings.Contains(string(cmdline), "qemu-system") || !strings.Contains(string(cmdline), d.stateRoot) {
		t.Fatalf("task pid %d is %q, want the pod's QEMU", pid, strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
}
