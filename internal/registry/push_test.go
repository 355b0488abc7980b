package registry

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/kata-go/kata-go/internal/ociimage"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fakeRegistry keeps blobs and manifests in memory and checks what a real
// registry checks: an upload's digest and a manifest's referenced blobs.
type fakeRegistry struct {
	// mu guards blobs, manifests and uploads.
	mu        sync.Mutex
	blobs     map[string][]byte
	manifests map[string][]byte
	uploads   int
}

func (f *fakeRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := r.URL.Path
	switch {
	case r.Method == http.MethodHead && strings.Contains(p, "/blobs/sha256:"):
		if _, ok := f.blobs[p[strings.LastIndex(p, "/")+1:]]; ok {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusNotFound)
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/blobs/uploads/"):
		f.uploads++
		// Relative, as distribution may answer: the client must resolve it.
		w.Header().Set("Location", "u1?state=x")
		w.WriteHeader(http.StatusAccepted)
	case r.Method == http.MethodPut && strings.Contains(p, "/blobs/uploads/"):
		b, _ := io.ReadAll(r.Body)
		d := r.URL.Query().Get("digest")
		if r.URL.Query().Get("state") != "x" || ociimage.Digest(b) != d {
			http.Error(w, "DIGEST_INVALID", http.StatusBadRequest)
			return
		}
		f.blobs[d] = b
		w.WriteHeader(http.StatusCreated)
	case r.Method == http.MethodPut && strings.Contains(p, "/manifests/"):
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != ociimage.MediaManifest {
			http.Error(w, "MANIFEST_INVALID", http.StatusBadRequest)
			return
		}
		f.manifests[p] = b
		w.WriteHeader(http.StatusCreated)
	default:
		http.Error(w, "UNSUPPORTED", http.StatusMethodNotAllowed)
	}
}

func testImage(t *testing.T) *ociimage.Image {
	t.Helper()
	img, err := ociimage.Build("r/x:1", ociimage.Config{}, []ociimage.Entry{ociimage.File("a", 0o644, []byte("a"))})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestPushUploadsBlobsOnceThenManifest(t *testing.T) {
	f := &fakeRegistry{blobs: map[string][]byte{}, manifests: map[string][]byte{}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c := &Client{Base: srv.URL}
	img := testImage(t)
	for _, tag := range []string{"1", "2"} {
		if err := c.Push(context.Background(), "team/x", tag, img); err != nil {
			t.Fatal(err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.uploads != 2 {
		t.Errorf("%d uploads, want 2 (config and layer once; the second tag finds them)", f.uploads)
	}
	if string(f.manifests["/v2/team/x/manifests/2"]) != string(img.Manifest) {
		t.Error("manifest for tag 2 not stored as built")
	}
}

func TestPushNamesTheRegistrysRefusal(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodHead {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		http.Error(w, "DENIED: read-only registry", http.StatusForbidden)
	}))
	defer srv.Close()
	err := (&Client{Base: srv.URL}).Push(context.Background(), "x", "1", testImage(t))
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "read-only registry") {
		t.Fatalf("err = %v, want the status and the registry's message", err)
	}
}
