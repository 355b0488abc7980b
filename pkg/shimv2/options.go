package shimv2

import (
	"fmt"
	"os"
	"strings"

	runcoptions "github.com/containerd/containerd/api/types/runc/options"
	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"github.com/containerd/containerd/runtime/linux/runctypes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/kata-go/kata-go/pkg/hostcgroup"
)

// runtimeOptions is what kata-go takes from containerd's runtime options.
type runtimeOptions struct {
	// ConfigPath names the kata-go config (CRI's runtime options, or
	// ctr --runtime-config-path).
	ConfigPath string
	// ShimCgroup is containerd's shim_cgroup: the cgroup the shim moves
	// itself into, as runc's shim does.
	ShimCgroup string
}

// parseOptions reads the runtime options of a Create. Three types carry
// what kata-go uses: CRI's runtimeoptions.v1.Options (ConfigPath), runc's
// options (containerd.WithShimCgroup on a runc runtime, or a client that
// reuses runc's options for kata-go) and runc's v1 CreateOptions (what
// containerd.WithShimCgroup sends for any other runtime). Options of
// another type are not ours and are ignored; a type ours that does not
// decode is an error naming it.
func parseOptions(opts *anypb.Any) (runtimeOptions, error) {
	var ro runtimeOptions
	if opts == nil {
		return ro, nil
	}
	url := opts.GetTypeUrl()
	var err error
	switch {
	case strings.HasSuffix(url, "runtimeoptions.v1.Options"):
		var o runtimeoptions.Options
		err = proto.Unmarshal(opts.GetValue(), &o)
		ro.ConfigPath = o.ConfigPath
	case strings.HasSuffix(url, "containerd.runc.v1.Options"):
		var o runcoptions.Options
		err = proto.Unmarshal(opts.GetValue(), &o)
		ro.ShimCgroup = o.ShimCgroup
	case strings.HasSuffix(url, "containerd.linux.runc.CreateOptions"):
		var o runctypes.CreateOptions
		err = proto.Unmarshal(opts.GetValue(), &o)
		ro.ShimCgroup = o.ShimCgroup
	}
	if err != nil {
		return runtimeOptions{}, fmt.Errorf("runtime options %s: %w", url, err)
	}
	return ro, nil
}

// placeShim moves the shim into containerd's shim_cgroup, which must
// exist (runc's shim does not create it either). Done at Create, never at
// `start`: the options reach the shim in the Create request, and start
// must not wait on a stdin containerd 1.6 may leave open.
func (ro runtimeOptions) placeShim() error {
	if ro.ShimCgroup == "" {
		return nil
	}
	if err := hostcgroup.JoinExisting(ro.ShimCgroup, os.Getpid()); err != nil {
		return fmt.Errorf("shim_cgroup: %w", err)
	}
	return nil
}
