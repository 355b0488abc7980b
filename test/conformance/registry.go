package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kata-go/kata-go/internal/registry"
)

// localRegistry is a distribution registry on 127.0.0.1 holding the test
// images; containerd reaches it as a mirror of the upstream registries.
type localRegistry struct {
	addr string
	cmd  *exec.Cmd
	done chan error
}

func startRegistry(bin, dir string) (*localRegistry, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "registry.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
`, filepath.Join(dir, "registry-data"), addr)), 0o644); err != nil {
		return nil, err
	}
	log, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(bin, "serve", cfg)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start registry: %w", err)
	}
	r := &localRegistry{addr: addr, cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		select {
		case err := <-r.done:
			return nil, fmt.Errorf("registry exited: %v (log %s)", err, log.Name())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.stop()
			return nil, fmt.Errorf("registry on %s not ready in 30s (log %s)", addr, log.Name())
		}
	}
}

// push uploads every image under every reference, host stripped: one
// registry mirrors them all, and no two references collide.
func (r *localRegistry) push(ctx context.Context, images []testImage) error {
	c := &registry.Client{Base: "http://" + r.addr}
	for _, ti := range images {
		for _, ref := range ti.refs {
			path := ref[strings.Index(ref, "/")+1:]
			i := strings.LastIndex(path, ":")
			if err := c.Push(ctx, path[:i], path[i+1:], ti.img); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeHosts makes a containerd config_path directory that sends each
// registry the images claim to come from to this one. containerd 1.6
// ignores a hosts.toml without a [host] table, so the mirror is one.
func (r *localRegistry) writeHosts(dir string, images []testImage) error {
	seen := map[string]bool{}
	for _, ti := range images {
		for _, ref := range ti.refs {
			host := ref[:strings.Index(ref, "/")]
			if seen[host] {
				continue
			}
			seen[host] = true
			if err := os.MkdirAll(filepath.Join(dir, host), 0o755); err != nil {
				return err
			}
			toml := fmt.Sprintf("server = \"https://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", host, r.addr)
			if err := os.WriteFile(filepath.Join(dir, host, "hosts.toml"), []byte(toml), 0o644); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *localRegistry) stop() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

// freeAddr picks a loopback port nothing listens on.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
