package sandbox

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/exec"
	"time"

	"github.com/containerd/containerd/namespaces"
)

// binaryLogger is a binary:// log driver: containerd's protocol gives it the
// read ends of stdout and stderr as fds 3 and 4 and a ready pipe as fd 5.
type binaryLogger struct {
	cmd            *exec.Cmd
	stdout, stderr *os.File
	done           chan error
}

func startBinaryLogger(ctx context.Context, id string, u *url.URL) (_ *binaryLogger, retErr error) {
	ns, _ := namespaces.Namespace(ctx)
	cmd := binaryCmd(u, id, ns)
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	readyR, readyW, err := os.Pipe()
	if err != nil {
		closeFiles(outR, outW, errR, errW)
		return nil, err
	}
	cmd.ExtraFiles = []*os.File{outR, errR, readyW}
	if err := cmd.Start(); err != nil {
		closeFiles(outR, outW, errR, errW, readyR, readyW)
		return nil, fmt.Errorf("start log binary %s: %w", u.Path, err)
	}
	closeFiles(outR, errR, readyW)
	b := &binaryLogger{cmd: cmd, stdout: outW, stderr: errW, done: make(chan error, 1)}
	go func() { b.done <- cmd.Wait() }()
	// The logger closes (or writes to) fd 5 once it is ready to read.
	ready := make(chan error, 1)
	go func() {
		_, err := readyR.Read(make([]byte, 1))
		readyR.Close()
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil && err != io.EOF {
			b.Close()
			return nil, fmt.Errorf("log binary %s: %w", u.Path, err)
		}
	case <-ctx.Done():
		b.Close()
		return nil, fmt.Errorf("log binary %s did not get ready: %w", u.Path, ctx.Err())
	}
	return b, nil
}

// Close waits (bounded) for the logger to finish after its inputs closed.
func (b *binaryLogger) Close() error {
	b.stdout.Close()
	b.stderr.Close()
	select {
	case <-b.done:
	case <-time.After(10 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.done
	}
	return nil
}

// binaryCmd builds the logger command as containerd does: query keys and
// values become arguments, the container is named in the environment.
func binaryCmd(u *url.URL, id, ns string) *exec.Cmd {
	var args []string
	for k, vs := range u.Query() {
		args = append(args, k)
		if len(vs) > 0 {
			args = append(args, vs[0])
		}
	}
	cmd := exec.Command(u.Path, args...)
	cmd.Env = append(cmd.Env, "CONTAINER_ID="+id, "CONTAINER_NAMESPACE="+ns)
	return cmd
}

func closeFiles(files ...*os.File) {
	for _, f := range files {
		f.Close()
	}
}
