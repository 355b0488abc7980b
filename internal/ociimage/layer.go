package ociimage

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"time"
)

// Entry is one member of a layer. Type is a tar type flag: TypeReg (Data),
// TypeDir, TypeSymlink or TypeLink (Link). Names carry no leading slash.
type Entry struct {
	Name     string
	Type     byte
	Mode     int64
	UID, GID int
	Data     []byte
	Link     string
}

// Dir is a directory entry.
func Dir(name string, mode int64) Entry {
	return Entry{Name: name, Type: tar.TypeDir, Mode: mode}
}

// File is a regular file entry.
func File(name string, mode int64, data []byte) Entry {
	return Entry{Name: name, Type: tar.TypeReg, Mode: mode, Data: data}
}

// HostFile is a regular file entry with the content of a host file
// (following symlinks, so a library's real bytes land under its soname).
func HostFile(name string, mode int64, host string) (Entry, error) {
	b, err := os.ReadFile(host)
	if err != nil {
		return Entry{}, fmt.Errorf("image file %s: %w", name, err)
	}
	return File(name, mode, b), nil
}

// epoch keeps layer bytes, and so digests, the same from run to run.
var epoch = time.Unix(0, 0)

// buildLayer returns the gzipped layer and the digest of its tar.
func buildLayer(entries []Entry) ([]byte, string, error) {
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, e := range entries {
		h := &tar.Header{Typeflag: e.Type, Name: e.Name, Mode: e.Mode, Uid: e.UID, Gid: e.GID, ModTime: epoch, Linkname: e.Link}
		if e.Type == tar.TypeReg {
			h.Size = int64(len(e.Data))
		}
		if e.Type == tar.TypeDir && e.Name[len(e.Name)-1] != '/' {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, "", fmt.Errorf("%s: %w", e.Name, err)
		}
		if e.Type == tar.TypeReg {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, "", fmt.Errorf("%s: %w", e.Name, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, "", err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
	if err != nil {
		return nil, "", err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, "", err
	}
	if err := zw.Close(); err != nil {
		return nil, "", err
	}
	return gz.Bytes(), Digest(raw.Bytes()), nil
}
