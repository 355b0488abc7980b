package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/kata-go/kata-go/pkg/config"
)

// The env output is a configuration file: read back by the shim's parser
// it gives the same configuration, defaults and non-defaults alike.
func TestEnvRoundTrips(t *testing.T) {
	for _, text := range []string{
		"",
		"[hypervisor]\nkernel_params = [\"quiet\", \"x=1\"]\nvcpus = 3\nenable_annotations = [\"hypervisor.memory_mib\"]\n" +
			"[agent]\ndial_timeout = \"1m30s\"\n[runtime]\ndebug = true\nnetwork_model = \"none\"\n",
	} {
		want, err := config.Parse(text)
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		if err := writeEnv(&b, want, []string{"qemu: QEMU emulator version 7.2\nsecond line"}); err != nil {
			t.Fatal(err)
		}
		got, err := config.Parse(b.String())
		if err != nil {
			t.Fatalf("env output does not parse: %v\n%s", err, b.String())
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("round trip changed the configuration:\n got %+v\nwant %+v\n%s", got, want, b.String())
		}
		if !strings.Contains(b.String(), "# qemu: QEMU emulator version 7.2 second line") {
			t.Errorf("versions missing:\n%s", b.String())
		}
	}
}
