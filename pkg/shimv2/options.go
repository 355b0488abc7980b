package shimv2

import (
	"fmt"
	"strings"

	runtimeoptions "github.com/containerd/containerd/api/types/runtimeoptions/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// configPath reads ConfigPath from containerd's runtime options (CRI's
// runtime options, or ctr --runtime-config-path). Options of another type
// are not ours and are ignored.
func configPath(opts *anypb.Any) (string, error) {
	if opts == nil || !strings.HasSuffix(opts.GetTypeUrl(), "runtimeoptions.v1.Options") {
		return "", nil
	}
	var o runtimeoptions.Options
	if err := proto.Unmarshal(opts.GetValue(), &o); err != nil {
		return "", fmt.Errorf("runtime options: %w", err)
	}
	return o.ConfigPath, nil
}
