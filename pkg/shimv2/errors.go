package shimv2

import "github.com/containerd/containerd/errdefs"

// errToGRPC keeps the status code an agent error already carries (ttrpc
// transports them) and maps the rest through containerd's errdefs.
func errToGRPC(err error) error { return errdefs.ToGRPC(err) }
