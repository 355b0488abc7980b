package mountinfo

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	table := "22 1 0:21 / /run rw - tmpfs tmpfs rw\n" +
		"30 22 0:40 / /run/kata/a rw - tmpfs tmpfs rw\n" +
		"31 30 0:41 / /run/kata/a/b\\040c rw - tmpfs tmpfs rw\n" +
		"32 22 0:42 / /run/kataX rw - tmpfs tmpfs rw\n"
	got, err := parse(strings.NewReader(table), "/run/kata/a")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "/run/kata/a/b c|/run/kata/a" {
		t.Fatalf("got %q", got)
	}
}

// A table read short or garbled is an error, never a shorter list.
func TestParseFailsLoudly(t *testing.T) {
	if _, err := parse(strings.NewReader("garbage\n"), "/"); err == nil {
		t.Fatal("malformed line accepted")
	}
	r := io.MultiReader(strings.NewReader("22 1 0:21 / /run rw - tmpfs tmpfs rw\n"), errReader{})
	if _, err := parse(r, "/run"); err == nil {
		t.Fatal("read error swallowed")
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("EIO") }
