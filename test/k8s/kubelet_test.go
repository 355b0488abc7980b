//go:build k8se2e

package k8s

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// KubeletVersion is the kubelet hack/build-kubelet.sh builds.
const KubeletVersion = "v1.37.2"

func kubeletPath() string {
	dir := os.Getenv("KATA_GO_KUBELET_DIR")
	if dir == "" {
		dir = "/var/cache/kata-go/kubelet-" + KubeletVersion
	}
	return filepath.Join(dir, "kubelet")
}

// kernelDefaults are the sysctls the kubelet checks at start
// (pkg/kubelet/cm/container_manager_linux.go, setupKernelTunables) with
// the values it wants. In the kubelet's mount namespace each is a file
// holding that value, bound over /proc/sys: with protectKernelDefaults the
// kubelet reads them, finds them right, and never writes the host's.
var kernelDefaults = [][2]string{
	{"vm/overcommit_memory", "1"},
	{"vm/panic_on_oom", "0"},
	{"kernel/panic", "10"},
	{"kernel/panic_on_oops", "1"},
	{"kernel/keys/root_maxkeys", "1000000"},
	{"kernel/keys/root_maxbytes", "25000000"},
}

// hostSysctls reads the host's values of kernelDefaults.
func hostSysctls(t *testing.T) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, s := range kernelDefaults {
		b, err := os.ReadFile("/proc/sys/" + s[0])
		if err != nil {
			t.Fatal(err)
		}
		m[s[0]] = strings.TrimSpace(string(b))
	}
	return m
}

// kubelet is a running standalone kubelet.
type kubelet struct {
	Dir        string
	Manifests  string
	Log        string
	CgroupRoot string
	Port       int

	cmd    *exec.Cmd
	done   chan error
	client *http.Client
}

// freePort is a TCP port on 127.0.0.1 nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startKubelet runs the kubelet against the CRI socket, in a private mount
// namespace, with everything it writes under a fresh directory and its
// pods' cgroups under cgroupRoot (which must exist).
func startKubelet(t *testing.T, criSock, cgroupRoot string) *kubelet {
	t.Helper()
	dir, err := os.MkdirTemp("", "kgo-k8s-")
	if err != nil {
		t.Fatal(err)
	}
	k := &kubelet{
		Dir:        dir,
		Manifests:  filepath.Join(dir, "manifests"),
		Log:        filepath.Join(dir, "kubelet.log"),
		CgroupRoot: cgroupRoot,
		Port:       freePort(t),
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			// The kubelet's self-signed serving certificate.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		}},
	}
	for _, d := range []string{k.Manifests, filepath.Join(dir, "sysctl")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	healthz := freePort(t)
	cfg := map[string]any{
		"apiVersion":         "kubelet.config.k8s.io/v1beta1",
		"kind":               "KubeletConfiguration",
		"staticPodPath":      k.Manifests,
		"fileCheckFrequency": "5s",
		"podLogsDir":         filepath.Join(dir, "pod-logs"),
		"volumePluginDir":    filepath.Join(dir, "volume-plugins"),
		"address":            "127.0.0.1",
		"port":               k.Port,
		"readOnlyPort":       0,
		"healthzBindAddress": "127.0.0.1",
		"healthzPort":        healthz,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": true},
			"webhook":   map[string]any{"enabled": false},
		},
		"authorization":            map[string]any{"mode": "AlwaysAllow"},
		"registerNode":             false,
		"failCgroupV1":             false,
		"failSwapOn":               false,
		"cgroupDriver":             "cgroupfs",
		"cgroupRoot":               cgroupRoot,
		"protectKernelDefaults":    true,
		"makeIPTablesUtilChains":   false,
		"containerRuntimeEndpoint": "unix://" + criSock,
		// The test's images exist only locally: never collect them.
		"imageGCHighThresholdPercent": 100,
		"imageGCLowThresholdPercent":  99,
		"evictionHard": map[string]string{
			"memory.available": "100Mi", "nodefs.available": "1%", "nodefs.inodesFree": "1%", "imagefs.available": "1%",
		},
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "kubelet.json")
	if err := os.WriteFile(cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	// The wrapper (run by unshare in the new mount namespace): bind each
	// sysctl file, hide the host's /var/log and /var/lib behind tmpfs
	// mounts (the kubelet always makes /var/log/containers, and its device
	// manager /var/lib/kubelet/device-plugins whatever --root-dir says),
	// become the kubelet (same pid).
	script := `set -e
while [ "$1" != "--" ]; do mount --bind "$1" "/proc/sys/$2"; shift 2; done
shift
mount -t tmpfs -o size=64m,mode=0755 kgo-kubelet-var-log /var/log
mount -t tmpfs -o size=64m,mode=0755 kgo-kubelet-var-lib /var/lib
exec "$@"`
	args := []string{"-m", "--propagation", "private", "--", "/bin/sh", "-c", script, "kubelet-ns"}
	for _, s := range kernelDefaults {
		f := filepath.Join(dir, "sysctl", strings.ReplaceAll(s[0], "/", "."))
		if err := os.WriteFile(f, []byte(s[1]+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, f, s[0])
	}
	args = append(args, "--", kubeletPath(), "--config="+cfgFile,
		"--root-dir="+filepath.Join(dir, "root"), "--cert-dir="+filepath.Join(dir, "pki"), "-v=2")
	logf, err := os.Create(k.Log)
	if err != nil {
		t.Fatal(err)
	}
	k.cmd = exec.Command("unshare", args...)
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		logf.Close()
		t.Fatal(err)
	}
	logf.Close()
	k.done = make(chan error, 1)
	go func(c *exec.Cmd, done chan error) { done <- c.Wait() }(k.cmd, k.done)

	deadline := time.Now().Add(90 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", healthz))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) == "ok" {
				break
			}
		}
		select {
		case err := <-k.done:
			k.done <- err
			t.Fatalf("kubelet exited (%v) before it was healthy:\n%s", err, tail(k.Log, 40))
		default:
		}
		if time.Now().After(deadline) {
			k.Stop()
			t.Fatalf("kubelet not healthy after 90 s:\n%s", tail(k.Log, 40))
		}
		time.Sleep(200 * time.Millisecond)
	}
	return k
}

// Stop ends the kubelet by its pid (SIGTERM, SIGKILL after 15 s). Its
// pods are not touched: remove their manifests first.
func (k *kubelet) Stop() {
	if k.cmd == nil || k.cmd.Process == nil {
		return
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(15 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
	k.cmd = nil
}

// get fetches a path from the kubelet's server (HTTPS, anonymous).
func (k *kubelet) get(path string, v any) error {
	resp, err := k.client.Get(fmt.Sprintf("https://127.0.0.1:%d%s", k.Port, path))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return json.Unmarshal(b, v)
}

// writeManifest puts a static pod in the manifest directory atomically
// (the kubelet ignores files whose name starts with a dot).
func (k *kubelet) writeManifest(t *testing.T, name string, pod any) string {
	t.Helper()
	b, err := json.MarshalIndent(pod, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(k.Manifests, "."+name+".tmp")
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(k.Manifests, name+".json")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// podStatus is what the kubelet's /pods says of a static pod.
type podStatus struct {
	Metadata struct{ Name, UID string }
	Status   struct {
		Phase      string
		Conditions []struct{ Type, Status string }
	}
}

func (p podStatus) ready() bool {
	for _, c := range p.Status.Conditions {
		if c.Type == "Ready" {
			return c.Status == "True"
		}
	}
	return false
}

// pod is the kubelet's view of the pod with uid (ok false: it has none).
func (k *kubelet) pod(uid string) (podStatus, bool, error) {
	var list struct{ Items []podStatus }
	if err := k.get("/pods", &list); err != nil {
		return podStatus{}, false, err
	}
	for _, p := range list.Items {
		if p.Metadata.UID == uid {
			return p, true, nil
		}
	}
	return podStatus{}, false, nil
}

// memStats is the memory part of the kubelet's stats summary.
type memStats struct {
	UsageBytes      *uint64 `json:"usageBytes"`
	WorkingSetBytes *uint64 `json:"workingSetBytes"`
	RSSBytes        *uint64 `json:"rssBytes"`
}

// podSummary is a pod's entry in /stats/summary.
type podSummary struct {
	PodRef struct {
		Name, Namespace, UID string
	} `json:"podRef"`
	Containers []struct {
		Name   string    `json:"name"`
		Memory *memStats `json:"memory"`
	} `json:"containers"`
	Memory *memStats `json:"memory"`
}

// summary is the pod's entry in the kubelet's /stats/summary.
func (k *kubelet) summary(uid string) (podSummary, bool, error) {
	var s struct {
		Pods []podSummary `json:"pods"`
	}
	if err := k.get("/stats/summary", &s); err != nil {
		return podSummary{}, false, err
	}
	for _, p := range s.Pods {
		if p.PodRef.UID == uid {
			return p, true, nil
		}
	}
	return podSummary{}, false, nil
}
