package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// fakeHost is a host with everything a pod needs, under dir; tests break
// one part at a time.
func fakeHost(t *testing.T, dir string) hostProbe {
	t.Helper()
	for _, f := range []string{"qemu", "virtiofsd", "vmlinux", "initrd.img"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return hostProbe{
		hardwareKVM: func() (bool, string) { return false, "/dev/kvm is PVM (kvm_pvm), not hardware KVM" },
		stat: func(p string) (os.FileInfo, error) {
			if strings.HasPrefix(p, "/dev/") {
				return nil, os.ErrNotExist
			}
			return os.Stat(p)
		},
		run: func(bin string, args ...string) (string, error) {
			switch filepath.Base(bin) {
			case "qemu":
				if args[0] == "-help" {
					return "-sandbox on[,obsolete=allow]\n", nil
				}
				return "QEMU emulator version 7.2.22\n", nil
			case "virtiofsd":
				return "virtiofsd version 7.2.22\n", nil
			}
			return "", errors.New("not found")
		},
		cgroupFS:         func() (int64, error) { return unix.CGROUP2_SUPER_MAGIC, nil },
		containerdVer:    func(string) (string, error) { return "", errors.New("connection refused") },
		containerdSocket: "/nonexistent.sock",
	}
}

func writeConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	p := filepath.Join(dir, "kata.toml")
	text := "[hypervisor]\npath = \"" + dir + "/qemu\"\nvirtiofsd_path = \"" + dir + "/virtiofsd\"\n" +
		"kernel = \"" + dir + "/vmlinux\"\ninitrd = \"" + dir + "/initrd.img\"\n" + extra
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func find(t *testing.T, rs []checkResult, name string) checkResult {
	t.Helper()
	for _, r := range rs {
		if r.name == name {
			return r
		}
	}
	t.Fatalf("no check %q in %v", name, rs)
	return checkResult{}
}

func TestCheckPassesAndNamesTCG(t *testing.T) {
	dir := t.TempDir()
	p := fakeHost(t, dir)
	rs := runChecks(writeConfig(t, dir, ""), p)
	var out strings.Builder
	if code := printResults(&out, rs); code != 0 {
		t.Fatalf("exit %d on a good host:\n%s", code, out.String())
	}
	a := find(t, rs, "accelerator")
	if !strings.Contains(a.detail, "TCG") || !strings.Contains(a.detail, "PVM") {
		t.Errorf("accelerator line %q does not name TCG and why", a)
	}
	if n := len(strings.Split(strings.TrimSpace(out.String()), "\n")); n != len(rs) {
		t.Errorf("%d lines for %d checks:\n%s", n, len(rs), out.String())
	}
}

func TestCheckFailures(t *testing.T) {
	for _, tc := range []struct {
		name, extra, check, want string
		breakIt                  func(dir string)
	}{
		{"missing kernel", "", "kernel", "vmlinux", func(dir string) { os.Remove(filepath.Join(dir, "vmlinux")) }},
		{"bad key", "colour = \"red\"\n", "config", "hypervisor.colour", nil},
		{"missing virtiofsd", "", "virtiofsd", "virtiofsd", func(dir string) { os.Remove(filepath.Join(dir, "virtiofsd")) }},
		{"kvm forced on PVM", "accelerator = \"kvm\"\n", "accelerator", "no hardware KVM", nil},
		{"vsock forced", "[agent]\ntransport = \"vsock\"\n", "vsock", "/dev/vhost-vsock", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := fakeHost(t, dir)
			cfg := writeConfig(t, dir, tc.extra)
			if tc.breakIt != nil {
				tc.breakIt(dir)
			}
			rs := runChecks(cfg, p)
			var out strings.Builder
			if code := printResults(&out, rs); code != 1 {
				t.Fatalf("exit %d, want 1:\n%s", code, out.String())
			}
			r := find(t, rs, tc.check)
			if r.status != statusFail || !strings.Contains(r.detail, tc.want) {
				t.Errorf("%s: got %q, want FAIL naming %q", tc.check, r, tc.want)
			}
		})
	}
}
