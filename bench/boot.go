package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/kata-go/kata-go/pkg/agentapi/channel"
	"github.com/kata-go/kata-go/pkg/agentclient"
	"github.com/kata-go/kata-go/pkg/hypervisor"
)

// bootBench boots the guest directly (no containerd) n times per machine
// type and returns, per type, QEMU start -> first Check answered and the
// guest's own uptime when the agent began serving (kernel + agent start).
func bootBench(root string, n int) []Result {
	var out []Result
	for _, machine := range []string{"microvm", "q35"} {
		var host, guest []float64
		for i := 0; i < n; i++ {
			h, g, err := bootOnce(root, machine)
			if err != nil {
				fmt.Fprintf(os.Stderr, "boot %s: %v\n", machine, err)
				break
			}
			host, guest = append(host, h), append(guest, g)
		}
		if len(host) == 0 {
			out = append(out, Result{Name: "boot " + machine, Unit: "ms", Note: "failed"})
			continue
		}
		out = append(out,
			Result{Name: "boot " + machine + ": qemu start -> Check", Unit: "ms", Kata: stat(host)},
			Result{Name: "boot " + machine + ": guest uptime at agent", Unit: "ms", Kata: stat(guest)})
	}
	return out
}

func bootOnce(root, machine string) (float64, float64, error) {
	dir, err := os.MkdirTemp("", "kgo-boot-")
	if err != nil {
		return 0, 0, err
	}
	defer os.RemoveAll(dir)
	secret, err := channel.NewSecret()
	if err != nil {
		return 0, 0, err
	}
	vm, err := hypervisor.NewQEMU(hypervisor.Config{
		AgentSecret: secret,
		QEMUPath:    "/usr/bin/qemu-system-x86_64", VirtiofsdPath: "/usr/lib/qemu/virtiofsd",
		Kernel: filepath.Join(root, "guest/out/vmlinux"), Initrd: filepath.Join(root, "guest/out/initrd.img"),
		MachineType: machine, Accelerator: hypervisor.AccelAuto, VCPUs: 1, MemoryMiB: 512,
		Transport: hypervisor.TransportSerial, StateDir: dir,
	})
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	start := time.Now()
	if err := vm.Start(ctx); err != nil {
		return 0, 0, err
	}
	defer vm.Stop(context.Background())
	a := vm.AgentAddress()
	c, err := agentclient.Dial(ctx, agentclient.Address{Transport: agentclient.Transport(a.Transport), Path: a.Path, Secret: a.Secret})
	if err != nil {
		return 0, 0, err
	}
	took := time.Since(start)
	defer c.Close()
	return float64(took.Microseconds()) / 1000, float64(c.CheckResponse().AgentStartUptimeNs) / 1e6, nil
}
