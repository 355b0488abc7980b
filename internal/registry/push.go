// Package registry pushes images built by internal/ociimage to an OCI
// distribution registry over plain HTTP (the conformance run's local
// registry on 127.0.0.1). It speaks only the monolithic upload and the
// manifest PUT of the distribution spec: all a test image needs.
package registry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/kata-go/kata-go/internal/ociimage"
)

// Client pushes to one registry.
type Client struct {
	// Base is the registry's root, e.g. http://127.0.0.1:5000.
	Base string
	HTTP *http.Client
}

// Push uploads img's blobs and manifest as repo:tag (repo without host,
// e.g. e2e-test-images/busybox).
func (c *Client) Push(ctx context.Context, repo, tag string, img *ociimage.Image) error {
	for _, b := range append([][]byte{img.Config}, img.Layers...) {
		if err := c.putBlob(ctx, repo, b); err != nil {
			return fmt.Errorf("push %s:%s: %w", repo, tag, err)
		}
	}
	u := fmt.Sprintf("%s/v2/%s/manifests/%s", c.Base, repo, tag)
	resp, err := c.do(ctx, http.MethodPut, u, ociimage.MediaManifest, img.Manifest)
	if err != nil {
		return fmt.Errorf("push %s:%s manifest: %w", repo, tag, err)
	}
	return expect(resp, http.StatusCreated)
}

func (c *Client) putBlob(ctx context.Context, repo string, b []byte) error {
	digest := ociimage.Digest(b)
	resp, err := c.do(ctx, http.MethodHead, fmt.Sprintf("%s/v2/%s/blobs/%s", c.Base, repo, digest), "", nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	resp, err = c.do(ctx, http.MethodPost, fmt.Sprintf("%s/v2/%s/blobs/uploads/", c.Base, repo), "", nil)
	if err != nil {
		return err
	}
	if err := expect(resp, http.StatusAccepted); err != nil {
		return fmt.Errorf("start upload: %w", err)
	}
	loc, err := resp.Location()
	if err != nil {
		return fmt.Errorf("upload location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", digest)
	loc.RawQuery = q.Encode()
	resp, err = c.do(ctx, http.MethodPut, loc.String(), "application/octet-stream", b)
	if err != nil {
		return err
	}
	if err := expect(resp, http.StatusCreated); err != nil {
		return fmt.Errorf("upload %s: %w", digest, err)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, u, contentType string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.ContentLength = int64(len(body))
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	return hc.Do(req)
}

// expect closes resp and names the status and the registry's message when
// it is not the one wanted.
func expect(resp *http.Response, want int) error {
	defer resp.Body.Close()
	if resp.StatusCode == want {
		return nil
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return fmt.Errorf("registry answered %s (want %d): %s", resp.Status, want, bytes.TrimSpace(msg))
}
