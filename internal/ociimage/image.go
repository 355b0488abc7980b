// Package ociimage builds small OCI images in memory, for tests,
// benchmarks, the conformance run and the README's first run: this machine
// has no registry to pull from. An Image can be written as an archive for
// `ctr images import` or pushed to a registry (internal/registry).
package ociimage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
)

// Media types of what Build produces.
const (
	MediaManifest = "application/vnd.oci.image.manifest.v1+json"
	MediaConfig   = "application/vnd.oci.image.config.v1+json"
	MediaLayer    = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// Config is the part of an image config a test image needs.
type Config struct {
	Entrypoint, Cmd, Env []string
	User                 string
	WorkingDir           string
}

// Image is a built image: its blobs are final, so digests are stable
// across runs with the same inputs.
type Image struct {
	// Ref is the full reference, e.g. registry.k8s.io/pause:3.9.
	Ref      string
	Config   []byte
	Manifest []byte
	Layers   [][]byte
}

// Build makes an image of ref from layers (lowest first).
func Build(ref string, c Config, layers ...[]Entry) (*Image, error) {
	img := &Image{Ref: ref}
	var diffIDs []string
	var layerDescs []any
	for i, entries := range layers {
		gz, diffID, err := buildLayer(entries)
		if err != nil {
			return nil, fmt.Errorf("%s: layer %d: %w", ref, i, err)
		}
		img.Layers = append(img.Layers, gz)
		diffIDs = append(diffIDs, diffID)
		layerDescs = append(layerDescs, descriptor(MediaLayer, gz))
	}
	env := c.Env
	if env == nil {
		env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	ic := map[string]any{"Env": env}
	if c.Entrypoint != nil {
		ic["Entrypoint"] = c.Entrypoint
	}
	if c.Cmd != nil {
		ic["Cmd"] = c.Cmd
	}
	if c.User != "" {
		ic["User"] = c.User
	}
	if c.WorkingDir != "" {
		ic["WorkingDir"] = c.WorkingDir
	}
	var err error
	img.Config, err = json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "config": ic,
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	if err != nil {
		return nil, err
	}
	img.Manifest, err = json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": MediaManifest,
		"config": descriptor(MediaConfig, img.Config),
		"layers": layerDescs,
	})
	if err != nil {
		return nil, err
	}
	return img, nil
}

// Digest is the content address of b, as OCI writes it.
func Digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func descriptor(mediaType string, b []byte) map[string]any {
	return map[string]any{"mediaType": mediaType, "digest": Digest(b), "size": len(b)}
}

// refName is the tag part of a reference, as OCI's ref.name wants it.
func refName(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return "latest"
}
