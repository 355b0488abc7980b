package ociimage

import (
	"archive/tar"
	"encoding/json"
	"io"
	"strings"
)

// WriteArchive writes img as an OCI image layout tar, the form
// `ctr images import` takes.
func (img *Image) WriteArchive(w io.Writer) error {
	md := descriptor(MediaManifest, img.Manifest)
	md["annotations"] = map[string]string{"io.containerd.image.name": img.Ref, "org.opencontainers.image.ref.name": refName(img.Ref)}
	index, err := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{md}})
	if err != nil {
		return err
	}
	tw := tar.NewWriter(w)
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: epoch}); err != nil {
			return err
		}
	}
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", index},
		{blobPath(img.Config), img.Config},
		{blobPath(img.Manifest), img.Manifest},
	}
	for _, l := range img.Layers {
		files = append(files, struct {
			name string
			data []byte
		}{blobPath(l), l})
	}
	for _, f := range files {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func blobPath(b []byte) string { return "blobs/sha256/" + strings.TrimPrefix(Digest(b), "sha256:") }
