package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// AnnotationPrefix starts every annotation that overrides configuration.
const AnnotationPrefix = "io.kata-go.config."

// annotationSetters are the overridable keys. Paths of binaries are among
// them: allowing those lets a pod author run any host binary as the VMM, so
// each must be allowed by name in hypervisor.enable_annotations.
var annotationSetters = map[string]func(*Hypervisor, string) error{
	"hypervisor.path":   func(h *Hypervisor, v string) error { h.Path = v; return nil },
	"hypervisor.kernel": func(h *Hypervisor, v string) error { h.Kernel = v; return nil },
	"hypervisor.initrd": func(h *Hypervisor, v string) error { h.Initrd = v; return nil },
	"hypervisor.kernel_params": func(h *Hypervisor, v string) error {
		h.KernelParams = append(h.KernelParams, strings.Fields(v)...)
		return nil
	},
	"hypervisor.vcpus": func(h *Hypervisor, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		h.VCPUs = n
		return nil
	},
	"hypervisor.memory_mib": func(h *Hypervisor, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil {
			return err
		}
		h.MemoryMiB = n
		return nil
	},
	"hypervisor.shared_fs":   func(h *Hypervisor, v string) error { h.SharedFS = v; return nil },
	"hypervisor.accelerator": func(h *Hypervisor, v string) error { h.Accelerator = v; return nil },
}

// ApplyAnnotations overrides settings from pod annotations. An annotation
// under AnnotationPrefix that is not allowed, or unknown, is an error naming it.
func (c *Config) ApplyAnnotations(ann map[string]string) error {
	keys := make([]string, 0, len(ann))
	for k := range ann {
		if strings.HasPrefix(k, AnnotationPrefix) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		name := strings.TrimPrefix(k, AnnotationPrefix)
		set, ok := annotationSetters[name]
		if !ok {
			return fmt.Errorf("annotation %s: unknown setting", k)
		}
		allowed := false
		for _, a := range c.Hypervisor.EnableAnnotations {
			allowed = allowed || a == name
		}
		if !allowed {
			return fmt.Errorf("annotation %s: not allowed (add %q to hypervisor.enable_annotations)", k, name)
		}
		if err := set(&c.Hypervisor, ann[k]); err != nil {
			return fmt.Errorf("annotation %s=%q: %w", k, ann[k], err)
		}
	}
	return c.Validate()
}
