//go:build integration

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kata-go/kata-go/internal/testenv"

	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kata-go/kata-go/pkg/agentapi"
	"github.com/kata-go/kata-go/pkg/agentapi/channel"
	"github.com/kata-go/kata-go/pkg/agentclient"
	"github.com/kata-go/kata-go/pkg/hypervisor"
)

const guestShare = "/run/kata-go/shared"

// guestVM is a booted VM with a connected agent and a shared directory.
type guestVM struct {
	vm     *hypervisor.QEMU
	agent  *agentclient.Client
	shared string
}

func bootGuest(t *testing.T, fs hypervisor.SharedFSType) *guestVM {
	t.Helper()
	needVM(t)
	dir, err := os.MkdirTemp("", "kata-go-it-")
	if err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(dir, "shared")
	if err := os.Mkdir(shared, 0o700); err != nil {
		t.Fatal(err)
	}
	secret, err := channel.NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := hypervisor.NewQEMU(hypervisor.Config{
		AgentSecret: secret,
		QEMUPath:    "/usr/bin/qemu-system-x86_64", VirtiofsdPath: "/usr/lib/qemu/virtiofsd",
		Kernel: testenv.GuestFile("vmlinux"), Initrd: testenv.GuestFile("initrd.img"),
		MachineType: "microvm", Accelerator: hypervisor.AccelAuto, VCPUs: 1, MemoryMiB: 512,
		Transport: hypervisor.TransportSerial, StateDir: dir,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := vm.AddDevice(hypervisor.SharedDir{Tag: "kataShared", HostPath: shared, Type: fs}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(vm.ConsoleLog()); err == nil {
				t.Logf("guest console:\n%s", b)
			}
		}
		_ = vm.Stop(context.Background())
		assertNoLeaks(t, dir)
		os.RemoveAll(dir)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := vm.Start(ctx); err != nil {
		t.Fatalf("start VM: %v", err)
	}
	addr := vm.AgentAddress()
	// Whoever reaches the agent's socket without the pod's secret (another
	// pod's shim, a host user on vsock) is refused by the real agent.
	wctx, wcancel := context.WithTimeout(ctx, 20*time.Second)
	wrong := bytes.Repeat([]byte{0x5a}, channel.SecretLen)
	if c, err := agentclient.Dial(wctx, agentclient.Address{Transport: agentclient.Transport(addr.Transport), Path: addr.Path, Secret: wrong}); err == nil {
		c.Close()
		t.Fatal("the agent served a connection with the wrong secret")
	} else if !errors.Is(err, channel.ErrAuth) {
		t.Fatalf("dial with the wrong secret: %v, want the agent's refusal", err)
	}
	wcancel()
	c, err := agentclient.Dial(ctx, agentclient.Address{Transport: agentclient.Transport(addr.Transport), Path: addr.Path, Secret: addr.Secret})
	if err != nil {
		t.Fatalf("dial agent: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	t.Logf("agent %s serving at guest uptime %s", c.CheckResponse().Version, time.Duration(c.CheckResponse().AgentStartUptimeNs))
	driver := "virtiofs"
	if fs == hypervisor.SharedFS9P {
		driver = "9p"
	}
	if _, err := c.CreateSandbox(ctx, &agentapi.CreateSandboxRequest{
		SandboxId: "it", Hostname: "kata-sandbox",
		Storages: []*agentapi.Storage{{Driver: driver, Source: "kataShared", MountPoint: guestShare}},
	}); err != nil {
		t.Fatalf("create sandbox: %v", err)
	}
	return &guestVM{vm: vm, agent: c, shared: shared}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}

// newContainer prepares a busybox rootfs in the share and returns a spec like ctr's.
func (g *guestVM) spec(t *testing.T, id string, args ...string) *specs.Spec {
	t.Helper()
	root := filepath.Join(g.shared, id, "rootfs")
	busyboxRootfs(t, root)
	// runc's default spec, the one `runc spec` writes.
	s := specconv.Example()
	s.Process.Terminal = false
	s.Process.Args = args
	s.Root.Path = filepath.Join(guestShare, id, "rootfs")
	s.Root.Readonly = false
	return s
}

func (g *guestVM) create(t *testing.T, id string, s *specs.Spec, stdin bool) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := g.agent.CreateContainer(ctx, &agentapi.CreateContainerRequest{ContainerId: id, OciSpec: b, Stdin: stdin}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	t.Cleanup(func() {
		_, _ = g.agent.RemoveContainer(context.Background(), &agentapi.ContainerRequest{ContainerId: id})
	})
}

func (g *guestVM) start(t *testing.T, id string) {
	t.Helper()
	if _, err := g.agent.StartContainer(context.Background(), &agentapi.ContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
}

// drain reads one stream to EOF.
func (g *guestVM) drain(cid, eid string, stderr bool) ([]byte, error) {
	var buf bytes.Buffer
	for {
		req := &agentapi.ReadStreamRequest{ContainerId: cid, ExecId: eid, Len: 256 << 10}
		var r *agentapi.ReadStreamResponse
		var err error
		if stderr {
			r, err = g.agent.ReadStderr(context.Background(), req)
		} else {
			r, err = g.agent.ReadStdout(context.Background(), req)
		}
		if err != nil {
			return buf.Bytes(), err
		}
		if len(r.Data) == 0 {
			return buf.Bytes(), nil
		}
		buf.Write(r.Data)
	}
}

// result collects a process's output and status.
type result struct {
	stdout, stderr []byte
	status         *agentapi.WaitProcessResponse
}

// collect drains both streams, then waits: output is complete before the status.
func (g *guestVM) collect(t *testing.T, cid, eid string) result {
	t.Helper()
	var r result
	var wg sync.WaitGroup
	var errOut, errErr error
	wg.Add(2)
	go func() { defer wg.Done(); r.stdout, errOut = g.drain(cid, eid, false) }()
	go func() { defer wg.Done(); r.stderr, errErr = g.drain(cid, eid, true) }()
	wg.Wait()
	if errOut != nil || errErr != nil {
		t.Fatalf("read output of %s/%s: %v %v", cid, eid, errOut, errErr)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := g.agent.WaitProcess(ctx, &agentapi.ProcessRequest{ContainerId: cid, ExecId: eid})
	if err != nil {
		t.Fatalf("wait %s/%s: %v", cid, eid, err)
	}
	r.status = st
	return r
}

func TestGuest(t *testing.T) {
	for _, fs := range []hypervisor.SharedFSType{hypervisor.SharedFSVirtioFS, hypervisor.SharedFS9P} {
		t.Run(string(fs), func(t *testing.T) {
			g := bootGuest(t, fs)
			t.Run("StdoutStderrExitCode", func(t *testing.T) {
				g.create(t, "echo", g.spec(t, "echo", "sh", "-c", "echo hello; echo oops >&2; exit 3"), false)
				g.start(t, "echo")
				r := g.collect(t, "echo", "")
				if string(r.stdout) != "hello\n" || string(r.stderr) != "oops\n" || r.status.Status != 3 {
					t.Fatalf("got stdout %q stderr %q status %d; want hello, oops, 3", r.stdout, r.stderr, r.status.Status)
				}
			})
			t.Run("Stdin", func(t *testing.T) {
				g.create(t, "cat", g.spec(t, "cat", "cat"), true)
				g.start(t, "cat")
				if _, err := g.agent.WriteStdin(context.Background(), &agentapi.WriteStreamRequest{ContainerId: "cat", Data: []byte("ping")}); err != nil {
					t.Fatal(err)
				}
				if _, err := g.agent.CloseStdin(context.Background(), &agentapi.ProcessRequest{ContainerId: "cat"}); err != nil {
					t.Fatal(err)
				}
				r := g.collect(t, "cat", "")
				if string(r.stdout) != "ping" || r.status.Status != 0 {
					t.Fatalf("cat gave %q status %d; want ping, 0", r.stdout, r.status.Status)
				}
			})
			t.Run("ExecAndSignals", func(t *testing.T) {
				g.create(t, "sleeper", g.spec(t, "sleeper", "sleep", "1000"), false)
				g.start(t, "sleeper")
				ps, _ := json.Marshal(&specs.Process{Args: []string{"sh", "-c", "echo from-exec; exit 7"}, Cwd: "/", Env: []string{"PATH=/bin"}})
				if _, err := g.agent.ExecProcess(context.Background(), &agentapi.ExecProcessRequest{ContainerId: "sleeper", ExecId: "e1", Process: ps}); err != nil {
					t.Fatalf("exec: %v", err)
				}
				r := g.collect(t, "sleeper", "e1")
				if string(r.stdout) != "from-exec\n" || r.status.Status != 7 {
					t.Fatalf("exec gave %q status %d; want from-exec, 7", r.stdout, r.status.Status)
				}
				// A second sleep as an exec (not PID 1 of its namespace, so
				// SIGTERM's default action applies) reports the signal.
				ps, _ = json.Marshal(&specs.Process{Args: []string{"sleep", "1000"}, Cwd: "/", Env: []string{"PATH=/bin"}})
				if _, err := g.agent.ExecProcess(context.Background(), &agentapi.ExecProcessRequest{ContainerId: "sleeper", ExecId: "e2", Process: ps}); err != nil {
					t.Fatalf("exec sleep: %v", err)
				}
				if _, err := g.agent.SignalProcess(context.Background(), &agentapi.SignalProcessRequest{ContainerId: "sleeper", ExecId: "e2", Signal: 15}); err != nil {
					t.Fatal(err)
				}
				r = g.collect(t, "sleeper", "e2")
				if r.status.Status != 143 || r.status.Signal != 15 {
					t.Fatalf("SIGTERM'd sleep: status %d signal %d; want 143, 15", r.status.Status, r.status.Signal)
				}
				if _, err := g.agent.SignalProcess(context.Background(), &agentapi.SignalProcessRequest{ContainerId: "sleeper", Signal: 9}); err != nil {
					t.Fatal(err)
				}
				r = g.collect(t, "sleeper", "")
				if r.status.Status != 137 {
					t.Fatalf("SIGKILL'd init: status %d; want 137", r.status.Status)
				}
			})
			t.Run("OneMiBAtExit", func(t *testing.T) {
				g.create(t, "big", g.spec(t, "big", "sh", "-c", "yes abcdefghijklmno | head -c 1048576"), false)
				g.start(t, "big")
				r := g.collect(t, "big", "")
				want := bytes.Repeat([]byte("abcdefghijklmno\n"), 1<<16)
				if !bytes.Equal(r.stdout, want) || r.status.Status != 0 {
					t.Fatalf("got %d bytes (equal=%v) status %d; want %d bytes, 0", len(r.stdout), bytes.Equal(r.stdout, want), r.status.Status, len(want))
				}
			})
			t.Run("ProcessIdentity", func(t *testing.T) {
				s := g.spec(t, "ident", "sh", "-c", `hostname; echo "$FOO"; pwd; id -u; id -g; id -G; echo $$`)
				s.Hostname = "kata-test"
				s.Process.Env = append(s.Process.Env, "FOO=bar")
				s.Process.Cwd = "/tmp"
				s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{2000}}
				g.create(t, "ident", s, false)
				g.start(t, "ident")
				r := g.collect(t, "ident", "")
				want := "kata-test\nbar\n/tmp\n1000\n1000\n1000 2000\n1\n"
				if string(r.stdout) != want || r.status.Status != 0 {
					t.Fatalf("got %q (stderr %q) status %d; want %q", r.stdout, r.stderr, r.status.Status, want)
				}
			})
			t.Run("MissingExecutable", func(t *testing.T) {
				b, _ := json.Marshal(g.spec(t, "missing", "/no/such/binary"))
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := g.agent.CreateContainer(ctx, &agentapi.CreateContainerRequest{ContainerId: "missing", OciSpec: b})
				if err == nil {
					_, _ = g.agent.RemoveContainer(context.Background(), &agentapi.ContainerRequest{ContainerId: "missing"})
					t.Fatal("create of a missing executable succeeded")
				}
				if !strings.Contains(err.Error(), "/no/such/binary") {
					t.Fatalf("error does not name the path: %v", err)
				}
				if status.Code(err) == codes.Unknown || status.Code(err) == codes.OK {
					t.Fatalf("error has no status code: %v", err)
				}
			})
		})
	}
}

// TestGuestPowersOffWhenHostHangsUp: once the shim's connection is gone
// (the shim was killed), nobody holds the pod's secret any more, and the
// agent powers the VM off, so the VMM exits by itself, even though QEMU
// dropped root and with it its parent-death signal.
func TestGuestPowersOffWhenHostHangsUp(t *testing.T) {
	g := bootGuest(t, hypervisor.SharedFSVirtioFS)
	g.agent.Close()
	select {
	case <-g.vm.Exited():
	case <-time.After(20 * time.Second):
		t.Fatal("the VM still runs 20 s after the host hung up")
	}
}
