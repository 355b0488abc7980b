package main

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kata-go/kata-go/internal/ociimage"
)

// testImage is one image critest pulls, under every reference it uses.
type testImage struct {
	refs []string
	img  *ociimage.Image
}

// Accounts as the upstream busybox image has them; the user images need
// www-data (33) and the group 1004 tests look for.
const (
	passwd = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nbin:x:2:2:bin:/bin:/bin/false\n" +
		"sys:x:3:3:sys:/dev:/bin/false\nwww-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"operator:x:37:37:Operator:/var:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
	group = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\nwheel:x:10:root\n" +
		"www-data:x:33:\noperator:x:37:\nusers:x:100:\nnogroup:x:65534:\n"
)

const (
	k8s     = "registry.k8s.io/"
	e2e     = k8s + "e2e-test-images/"
	staging = "gcr.io/k8s-staging-cri-tools/"
)

// buildImages makes every image critest v1.37.0 pulls (pkg/validate and
// pkg/framework name them), except the digest-pinned one: its digest is of
// an upstream build no local build can reproduce.
func buildImages(busybox, testbin string) ([]testImage, error) {
	base, err := busyboxBase(busybox)
	if err != nil {
		return nil, err
	}
	tb, err := os.ReadFile(testbin)
	if err != nil {
		return nil, err
	}
	bin := func(name string, mode int64) ociimage.Entry {
		return ociimage.File(name, mode, tb)
	}
	accounts := func(pw, gr string) []ociimage.Entry {
		return []ociimage.Entry{ociimage.File("etc/passwd", 0o644, []byte(pw)), ociimage.File("etc/group", 0o644, []byte(gr))}
	}
	stdAccounts := accounts(passwd, group)
	webDirs := []ociimage.Entry{ociimage.Dir("usr/sbin", 0o755), ociimage.Dir("var/run", 0o755)}

	var out []testImage
	add := func(c ociimage.Config, extra []ociimage.Entry, refs ...string) {
		if err != nil {
			return
		}
		layers := [][]ociimage.Entry{base, stdAccounts}
		if extra != nil {
			layers = append(layers, extra)
		}
		var img *ociimage.Image
		img, err = ociimage.Build(refs[0], c, layers...)
		out = append(out, testImage{refs: refs, img: img})
	}
	marker := func(name string) []ociimage.Entry {
		return []ociimage.Entry{ociimage.File(name, 0o644, []byte(name+"\n"))}
	}

	add(ociimage.Config{Cmd: []string{"sh"}}, nil, e2e+"busybox:1.29-2")
	add(ociimage.Config{Cmd: []string{"nginx"}}, append(webDirs, bin("usr/sbin/nginx", 0o755)), e2e+"nginx:1.14-2")
	add(ociimage.Config{Cmd: []string{"nginx", "-listen", ":12003"}}, append(webDirs, bin("usr/sbin/nginx", 0o755)), staging+"hostnet-nginx-amd64:latest")
	add(ociimage.Config{Cmd: []string{"/usr/local/apache2/bin/httpd"}},
		[]ociimage.Entry{ociimage.Dir("usr/local", 0o755), ociimage.Dir("usr/local/apache2", 0o755), ociimage.Dir("usr/local/apache2/bin", 0o755),
			bin("usr/local/apache2/bin/httpd", 0o755)}, e2e+"httpd:2.4.39-4")
	// Setuid root, so no_new_privs decides the effective uid.
	add(ociimage.Config{Entrypoint: []string{"/usr/local/bin/nnp"}},
		[]ociimage.Entry{ociimage.Dir("usr/local", 0o755), ociimage.Dir("usr/local/bin", 0o755), bin("usr/local/bin/nnp", 0o4755)}, e2e+"nonewprivs:1.3")

	for name, user := range map[string]string{
		"test-image-user-uid": "1002", "test-image-user-username": "www-data",
		"test-image-user-uid-group": "1003:1004", "test-image-user-username-group": "www-data:1004",
	} {
		add(ociimage.Config{Cmd: []string{"sh"}, User: user}, nil, staging+name+":latest")
	}
	add(ociimage.Config{Cmd: []string{"sh"}, User: "1000"},
		accounts(passwd+"default-user:x:1000:1000::/home/default-user:/bin/sh\n", group+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"),
		staging+"test-image-predefined-group:latest")
	for _, name := range []string{"test-image-1", "test-image-2", "test-image-3", "test-image-latest"} {
		add(ociimage.Config{Cmd: []string{"sh"}}, marker(name), staging+name+":latest")
	}
	add(ociimage.Config{Cmd: []string{"sh"}}, marker("test-image-tag"), staging+"test-image-tag:test", staging+"test-image-tag:all")
	add(ociimage.Config{Cmd: []string{"sh"}}, marker("same-image"), staging+"test-image-tags:1", staging+"test-image-tags:2", staging+"test-image-tags:3")

	// The pause image is its own program only, as upstream's is.
	if err == nil {
		var pause *ociimage.Image
		pause, err = ociimage.Build(k8s+"pause:3.9", ociimage.Config{Entrypoint: []string{"/pause"}}, []ociimage.Entry{bin("pause", 0o755)})
		out = append(out, testImage{refs: []string{k8s + "pause:3.9", "k8s.gcr.io/pause:3.9"}, img: pause})
	}
	return out, err
}

// lddLine matches the libraries ldd resolves: "name => /path (addr)" and
// the loader's "/path (addr)".
var lddLine = regexp.MustCompile(`(?m)^\s*(?:\S+ => )?(/\S+) \(0x`)

// hostTools are programs critest runs in its busybox image that no
// busybox build has; Debian's, with their libraries, stand in.
var hostTools = [][2]string{{"usr/bin/ipcs", "/usr/bin/ipcs"}, {"usr/bin/pgrep", "/usr/bin/pgrep"}}

// busyboxBase is busybox with hard-linked applets (run as programs, not
// in-process), hostTools, and the libraries all of them load, copied from
// the host under the paths ldd names.
func busyboxBase(busybox string) ([]ociimage.Entry, error) {
	entries, err := ociimage.BusyboxEntries(busybox, true)
	if err != nil {
		return nil, err
	}
	progs := []string{busybox}
	for _, t := range hostTools {
		dest, host := t[0], t[1]
		e, err := ociimage.HostFile(dest, 0o755, host)
		if err != nil {
			return nil, fmt.Errorf("%w (apt-get install procps util-linux)", err)
		}
		entries = append(entries, e)
		progs = append(progs, host)
	}
	have := map[string]bool{}
	for _, e := range entries {
		if e.Type == tar.TypeDir {
			have[e.Name] = true
		}
	}
	// mkdirs adds the directories above name the image lacks, outermost
	// first, so unpackers meet a parent before its children.
	mkdirs := func(name string) {
		var missing []string
		for d := filepath.Dir(name); d != "." && !have[d]; d = filepath.Dir(d) {
			missing = append(missing, d)
		}
		for i := len(missing) - 1; i >= 0; i-- {
			have[missing[i]] = true
			entries = append(entries, ociimage.Dir(missing[i], 0o755))
		}
	}
	libs := map[string]bool{}
	for _, prog := range progs {
		out, err := exec.Command("ldd", prog).Output()
		if err != nil {
			return nil, fmt.Errorf("ldd %s: %w", prog, err)
		}
		for _, m := range lddLine.FindAllStringSubmatch(string(out), -1) {
			lib := strings.TrimPrefix(m[1], "/")
			if libs[lib] {
				continue
			}
			libs[lib] = true
			e, err := ociimage.HostFile(lib, 0o755, m[1])
			if err != nil {
				return nil, err
			}
			mkdirs(lib)
			entries = append(entries, e)
		}
	}
	return entries, nil
}
