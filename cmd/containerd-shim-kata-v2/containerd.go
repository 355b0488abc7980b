package main

import (
	"context"
	"fmt"
	"time"

	versionAPI "github.com/containerd/containerd/api/services/version/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"
)

// containerdVersion asks the daemon at socket for its version.
func containerdVersion(socket string) (string, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	v, err := versionAPI.NewVersionClient(conn).Version(ctx, &emptypb.Empty{}, grpc.WaitForReady(false))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("containerd %s (%s)", v.Version, v.Revision), nil
}
