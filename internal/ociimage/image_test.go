package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// readLayer lists a gzipped layer's headers.
func readLayer(t *testing.T, gz []byte) []*tar.Header {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var hs []*tar.Header
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hs
		}
		if err != nil {
			t.Fatal(err)
		}
		hs = append(hs, h)
	}
}

func TestBuildManifestNamesItsBlobs(t *testing.T) {
	img, err := Build("example.com/a/b:1", Config{Cmd: []string{"sh"}, User: "1000:50"},
		[]Entry{Dir("etc", 0o755), File("etc/passwd", 0o644, []byte("root:x:0:0::/:/bin/sh\n"))},
		[]Entry{File("bin/nnp", 0o4755, []byte("x")), {Name: "bin/nnp2", Type: tar.TypeLink, Link: "bin/nnp", Mode: 0o4755}})
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		Config struct{ Digest string }
		Layers []struct {
			Digest    string
			MediaType string
		}
	}
	if err := json.Unmarshal(img.Manifest, &m); err != nil {
		t.Fatal(err)
	}
	if m.Config.Digest != Digest(img.Config) {
		t.Errorf("manifest config digest %s, config is %s", m.Config.Digest, Digest(img.Config))
	}
	if len(m.Layers) != 2 || m.Layers[1].Digest != Digest(img.Layers[1]) || m.Layers[1].MediaType != MediaLayer {
		t.Fatalf("manifest layers %+v do not name the built layers", m.Layers)
	}
	var c struct {
		Config struct {
			User string
			Cmd  []string
		}
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(img.Config, &c); err != nil {
		t.Fatal(err)
	}
	if c.Config.User != "1000:50" || len(c.RootFS.DiffIDs) != 2 {
		t.Errorf("config %s: want user 1000:50 and two diff ids", img.Config)
	}
	hs := readLayer(t, img.Layers[1])
	if hs[0].Mode != 0o4755 || hs[1].Typeflag != tar.TypeLink || hs[1].Linkname != "bin/nnp" {
		t.Errorf("layer headers %+v %+v: want setuid file and hard link to it", hs[0], hs[1])
	}
	if readLayer(t, img.Layers[0])[0].Name != "etc/" {
		t.Error("directory entry has no trailing slash")
	}
}

func TestBuildIsReproducible(t *testing.T) {
	build := func() *Image {
		img, err := Build("r/x:1", Config{}, []Entry{File("a", 0o644, []byte("a"))})
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	a, b := build(), build()
	if Digest(a.Manifest) != Digest(b.Manifest) {
		t.Error("same inputs gave different manifests: registries would see a new image each run")
	}
}

func TestWriteArchiveIndexPointsAtManifest(t *testing.T) {
	img, err := Build("docker.io/library/x:tag", Config{}, []Entry{File("a", 0o644, []byte("a"))})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := img.WriteArchive(&buf); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		files[h.Name] = b
	}
	var idx struct {
		Manifests []struct {
			Digest      string
			Annotations map[string]string
		}
	}
	if err := json.Unmarshal(files["index.json"], &idx); err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != "tag" {
		t.Fatalf("index %s", files["index.json"])
	}
	d := idx.Manifests[0].Digest
	if !bytes.Equal(files["blobs/sha256/"+d[len("sha256:"):]], img.Manifest) {
		t.Error("index digest does not name the manifest blob")
	}
	for _, blob := range append([][]byte{img.Config}, img.Layers...) {
		if _, ok := files[blobPath(blob)]; !ok {
			t.Errorf("archive lacks blob %s", Digest(blob))
		}
	}
}
