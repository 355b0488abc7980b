package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/kata-go/kata-go/pkg/config"
)

func runEnv(args []string) int {
	fs := flag.NewFlagSet("env", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (default: $"+config.EnvPath+", else "+config.DefaultPath+")")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := writeEnv(os.Stdout, cfg, versions(cfg, realProbe("").run)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// versions are the components' versions, as "name: version" lines.
func versions(cfg config.Config, run func(string, ...string) (string, error)) []string {
	first := func(bin, flag string) string {
		out, err := run(bin, flag)
		if err != nil {
			return "unavailable (" + err.Error() + ")"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(out), "\n")
		return line
	}
	return []string{
		"containerd-shim-kata-v2: " + version + " (" + runtime.Version() + ")",
		"qemu: " + first(cfg.Hypervisor.Path, "-version"),
		"virtiofsd: " + first(cfg.Hypervisor.VirtiofsdPath, "--version"),
	}
}

// writeEnv prints the effective configuration as TOML that the shim's own
// parser reads back to the same values; versions are TOML comments so the
// whole output stays a valid configuration file.
func writeEnv(w io.Writer, cfg config.Config, vers []string) error {
	var b bytes.Buffer
	src := cfg.Source
	if src == "" {
		src = "built-in defaults"
	}
	fmt.Fprintf(&b, "# kata-go effective configuration (from %s, defaults filled in)\n", src)
	for _, v := range vers {
		fmt.Fprintf(&b, "# %s\n", strings.ReplaceAll(v, "\n", " "))
	}
	b.WriteString("\n")
	if err := toml.NewEncoder(&b).Encode(cfg); err != nil {
		return fmt.Errorf("encode configuration: %w", err)
	}
	_, err := w.Write(b.Bytes())
	return err
}
