package shimv2

import "google.golang.org/protobuf/types/known/emptypb"

type emptyResponse = emptypb.Empty

var empty = &emptypb.Empty{}
