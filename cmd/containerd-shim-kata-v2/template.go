package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/kata-go/kata-go/pkg/config"
	"github.com/kata-go/kata-go/pkg/sandbox"
)

// runTemplate manages VM templates: create makes one ahead of the first
// pod, list shows them, delete removes them (running pods are unharmed).
func runTemplate(args []string) int {
	usage := "usage: containerd-shim-kata-v2 template create|list|delete [-config FILE] [-nics N]"
	if len(args) < 1 {
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	fs := flag.NewFlagSet("template "+args[0], flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (default: $"+config.EnvPath+", else "+config.DefaultPath+")")
	nics := fs.Int("nics", 1, "create: NICs of the pods it serves (1 for a CNI pod, 0 for `ctr run` without a network namespace)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	switch args[0] {
	case "create":
		if *nics < 0 || *nics > 8 {
			fmt.Fprintf(os.Stderr, "-nics %d: want 0 to 8\n", *nics)
			return 2
		}
		log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		t, err := sandbox.MakeTemplate(ctx, cfg, *nics, log)
		if err != nil {
			fmt.Fprintln(os.Stderr, "template create:", err)
			return 1
		}
		fmt.Println(t.Dir)
	case "list":
		ms, err := sandbox.Templates(cfg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "template list:", err)
			return 1
		}
		for _, m := range ms {
			fmt.Printf("%s  %d vCPU  %d MiB  %d NIC  %s  made %s in %d ms\n", m.Hash, m.Key.VCPUs, m.Key.MemoryMiB, m.Key.NICs,
				m.Key.Accelerator, m.Created.Format(time.RFC3339), m.BootMs)
		}
	case "delete":
		if err := sandbox.DeleteTemplates(cfg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	default:
		fmt.Fprintln(os.Stderr, usage)
		return 2
	}
	return 0
}
