package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"go.uber.org/goleak"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newTestService(t *testing.T) *service {
	t.Helper()
	s := NewService(Options{Dir: t.TempDir()}).svc
	t.Cleanup(func() { _, _ = s.DestroySandbox(context.Background(), &agentapi.DestroySandboxRequest{}) })
	return s
}

func specJSON(args ...string) []byte {
	b, _ := json.Marshal(&specs.Spec{
		Process: &specs.Process{Args: args, Cwd: "/"},
		Root:    &specs.Root{Path: "/run/rootfs"},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/proc/1/ns/net"}},
		},
		Hooks: &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/host/bin"}}},
	})
	return b
}

func runContainer(t *testing.T, s *service, id string, stdin bool, args ...string) {
	t.Helper()
	ctx := context.Background()
	if _, err := s.CreateContainer(ctx, &agentapi.CreateContainerRequest{ContainerId: id, OciSpec: specJSON(args...), Stdin: stdin}); err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := s.StartContainer(ctx, &agentapi.ContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("start: %v", err)
	}
}

func readAll(t *testing.T, s *service, cid, eid string, stderr bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	for {
		req := &agentapi.ReadStreamRequest{ContainerId: cid, ExecId: eid, Len: 65536}
		var r *agentapi.ReadStreamResponse
		var err error
		if stderr {
			r, err = s.ReadStderr(context.Background(), req)
		} else {
			r, err = s.ReadStdout(context.Background(), req)
		}
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if len(r.Data) == 0 {
			return buf.Bytes()
		}
		buf.Write(r.Data)
	}
}

func waitStatus(t *testing.T, s *service, cid, eid string) *agentapi.WaitProcessResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{ContainerId: cid, ExecId: eid})
	if err != nil {
		t.Fatalf("wait: %v", err)
	}
	return r
}

func TestOutputAndStatus(t *testing.T) {
	s := newTestService(t)
	runContainer(t, s, "c", false, "sh", "-c", "echo hello; echo oops >&2; exit 3")
	if out := readAll(t, s, "c", "", false); string(out) != "hello\n" {
		t.Fatalf("stdout %q", out)
	}
	if out := readAll(t, s, "c", "", true); string(out) != "oops\n" {
		t.Fatalf("stderr %q", out)
	}
	if st := waitStatus(t, s, "c", ""); st.Status != 3 {
		t.Fatalf("status %d", st.Status)
	}
}

// A process that writes more than a pipe holds and exits at once loses nothing.
func TestLargeOutputAtExit(t *testing.T) {
	s := newTestService(t)
	runContainer(t, s, "c", false, "head", "-c", "1048576", "/dev/zero")
	if out := readAll(t, s, "c", "", false); len(out) != 1<<20 {
		t.Fatalf("got %d bytes, want %d", len(out), 1<<20)
	}
	if st := waitStatus(t, s, "c", ""); st.Status != 0 {
		t.Fatalf("status %d", st.Status)
	}
}

func TestStdinAndExecAndSignal(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	runContainer(t, s, "c", true, "cat")
	if _, err := s.WriteStdin(ctx, &agentapi.WriteStreamRequest{ContainerId: "c", Data: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	ps, _ := json.Marshal(&specs.Process{Args: []string{"sleep", "100"}, Cwd: "/"})
	if _, err := s.ExecProcess(ctx, &agentapi.ExecProcessRequest{ContainerId: "c", ExecId: "e", Process: ps}); err != nil {
		t.Fatalf("exec: %v", err)
	}
	if _, err := s.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: "c", ExecId: "e", Signal: 15}); err != nil {
		t.Fatal(err)
	}
	if st := waitStatus(t, s, "c", "e"); st.Status != 143 || st.Signal != 15 {
		t.Fatalf("exec after SIGTERM: %+v", st)
	}
	// Signalling an exited process is not an error.
	if _, err := s.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: "c", ExecId: "e", Signal: 9}); err != nil {
		t.Fatalf("signal after exit: %v", err)
	}
	if _, err := s.CloseStdin(ctx, &agentapi.ProcessRequest{ContainerId: "c"}); err != nil {
		t.Fatal(err)
	}
	if out := readAll(t, s, "c", "", false); string(out) != "ping" {
		t.Fatalf("cat echoed %q", out)
	}
	if _, err := s.WriteStdin(ctx, &agentapi.WriteStreamRequest{ContainerId: "c", Data: []byte("late")}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("write after close: %v", err)
	}
}

func TestBadRequestsGetErrors(t *testing.T) {
	s := newTestService(t)
	ctx := context.Background()
	cases := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"unknown container", func() error {
			_, err := s.StartContainer(ctx, &agentapi.ContainerRequest{ContainerId: "nope"})
			return err
		}, codes.NotFound},
		{"bad id", func() error {
			_, err := s.CreateContainer(ctx, &agentapi.CreateContainerRequest{ContainerId: "../x", OciSpec: specJSON("true")})
			return err
		}, codes.InvalidArgument},
		{"bad spec", func() error {
			_, err := s.CreateContainer(ctx, &agentapi.CreateContainerRequest{ContainerId: "x", OciSpec: []byte("{")})
			return err
		}, codes.InvalidArgument},
		{"no args", func() error {
			_, err := s.CreateContainer(ctx, &agentapi.CreateContainerRequest{ContainerId: "x", OciSpec: specJSON()})
			return err
		}, codes.InvalidArgument},
		{"bad signal", func() error {
			_, err := s.SignalProcess(ctx, &agentapi.SignalProcessRequest{ContainerId: "x", Signal: 99})
			return err
		}, codes.InvalidArgument},
		{"bad storage", func() error {
			_, err := s.CreateSandbox(ctx, &agentapi.CreateSandboxRequest{Storages: []*agentapi.Storage{{Driver: "nfs", Source: "x", MountPoint: "/x"}}})
			return err
		}, codes.InvalidArgument},
		{"unknown exec", func() error {
			_, err := s.WaitProcess(ctx, &agentapi.ProcessRequest{ContainerId: "x", ExecId: "e"})
			return err
		}, codes.NotFound},
	}
	for _, c := range cases {
		if err := c.call(); status.Code(err) != c.want {
			t.Errorf("%s: got %v, want code %v", c.name, err, c.want)
		}
	}
	runContainer(t, s, "dup", false, "sleep", "100")
	if _, err := s.CreateContainer(ctx, &agentapi.CreateContainerRequest{ContainerId: "dup", OciSpec: specJSON("true")}); status.Code(err) != codes.AlreadyExists {
		t.Errorf("duplicate create: %v", err)
	}
	if _, err := s.StartContainer(ctx, &agentapi.ContainerRequest{ContainerId: "dup"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second start: %v", err)
	}
}

func TestGuestSpecDropsHostResources(t *testing.T) {
	s, err := guestSpec("c1", specJSON("true"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.Hooks != nil || s.Linux.CgroupsPath != "/kata-go/c1" {
		t.Fatalf("hooks %v cgroups %q", s.Hooks, s.Linux.CgroupsPath)
	}
	for _, n := range s.Linux.Namespaces {
		if n.Type == specs.NetworkNamespace || n.Path != "" {
			t.Fatalf("namespace kept: %+v", n)
		}
	}
	if _, err := guestSpec("c1", []byte(`{"process":{"args":["x"],"cwd":"/"},"root":{"path":"rel"},"linux":{}}`), nil); err == nil || !strings.Contains(err.Error(), "root.path") {
		t.Fatalf("relative root: %v", err)
	}
}

func TestPodNamespacesJoinOnlyKnownInits(t *testing.T) {
	raw := []byte(`{"process":{"args":["x"],"cwd":"/"},"root":{"path":"/r"},"linux":{"namespaces":[
		{"type":"ipc","path":"/proc/42/ns/ipc"},{"type":"uts","path":"/proc/43/ns/uts"},
		{"type":"mount","path":"/var/run/netns/x"},{"type":"pid"}]}}`)
	s, err := guestSpec("c", raw, func(pid int) bool { return pid == 42 })
	if err != nil {
		t.Fatal(err)
	}
	got := map[specs.LinuxNamespaceType]string{}
	for _, n := range s.Linux.Namespaces {
		got[n.Type] = n.Path
	}
	if got[specs.IPCNamespace] != "/proc/42/ns/ipc" || got[specs.UTSNamespace] != "" || got[specs.MountNamespace] != "" {
		t.Fatalf("namespaces %v", got)
	}
}

func TestNetSysctlsGoToTheGuest(t *testing.T) {
	s := &specs.Spec{Linux: &specs.Linux{Sysctl: map[string]string{"net.ipv4.ip_unprivileged_port_start": "0", "kernel.msgmax": "8192"}}}
	got := podSysctls(s)
	if got["net.ipv4.ip_unprivileged_port_start"] != "0" || len(got) != 1 || s.Linux.Sysctl["kernel.msgmax"] != "8192" || len(s.Linux.Sysctl) != 1 {
		t.Fatalf("pod sysctls %v, left %v", got, s.Linux.Sysctl)
	}
	for _, bad := range []string{"net..x", "../etc/passwd", "net/ipv4", ""} {
		if _, err := sysctlPath(bad); err == nil {
			t.Errorf("sysctl name %q accepted", bad)
		}
	}
	if p, err := sysctlPath("net.ipv4.ip_forward"); err != nil || p != "/proc/sys/net/ipv4/ip_forward" {
		t.Fatalf("path %q %v", p, err)
	}
}

func TestOOMQueue(t *testing.T) {
	q := newOOMQueue()
	q.push("a")
	q.push("b")
	for _, want := range []string{"a", "b"} {
		if got, err := q.pop(context.Background()); err != nil || got != want {
			t.Fatalf("pop: %q %v, want %q", got, err, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if _, err := q.pop(ctx); err == nil {
		t.Fatal("pop on an empty queue returned")
	}
}

func TestMountArgs(t *testing.T) {
	bad := []*agentapi.Storage{
		{Driver: "virtiofs", Source: "tag", MountPoint: "rel"},
		{Driver: "virtiofs", Source: "tag", MountPoint: "/a/../b"},
		{Driver: "9p", Source: "tag", MountPoint: "/x", Options: []string{"a,b"}},
		{Driver: "bind", Source: "rel", MountPoint: "/x"},
		{Driver: "virtiofs", Source: "", MountPoint: "/x"},
	}
	for _, st := range bad {
		if _, _, _, _, err := mountArgs(st); err == nil {
			t.Errorf("mountArgs(%+v) accepted", st)
		}
	}
	src, fs, _, data, err := mountArgs(&agentapi.Storage{Driver: "9p", Source: "kataShared", MountPoint: "/run/s", Options: []string{"ro"}})
	if err != nil || src != "kataShared" || fs != "9p" || !strings.Contains(data, "trans=virtio") {
		t.Fatalf("9p: %s %s %s %v", src, fs, data, err)
	}
}

func FuzzGuestSpec(f *testing.F) {
	f.Add("c1", specJSON("sh", "-c", "true"))
	f.Add("x", []byte(`{"process":{"args":["a"],"cwd":"/"},"root":{"path":"/r"},"linux":{"resources":{"memory":{"limit":1}}}}`))
	f.Add("y", []byte(`{"process":{"args":[""],"cwd":"/"}}`))
	f.Add("z", []byte(`null`))
	f.Fuzz(func(t *testing.T, id string, raw []byte) {
		if checkID("container", id) != nil {
			return
		}
		s, err := guestSpec(id, raw, func(pid int) bool { return pid == 42 })
		if err != nil {
			return
		}
		if s.Process == nil || len(s.Process.Args) == 0 || s.Process.Args[0] == "" {
			t.Fatal("accepted a spec with nothing to run")
		}
		if s.Hooks != nil || s.Linux.CgroupsPath != cgroupParent+"/"+id {
			t.Fatal("host hooks or cgroup path survived")
		}
		for _, n := range s.Linux.Namespaces {
			if n.Type == specs.NetworkNamespace || (n.Path != "" && !strings.HasPrefix(n.Path, "/proc/42/ns/")) {
				t.Fatalf("namespace %v survived", n)
			}
		}
	})
}
