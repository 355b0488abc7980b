package agent

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"

	"github.com/kata-go/kata-go/pkg/agentapi"
)

// Bounds of one reseed: fewer than 32 bytes cannot carry 256 bits of
// entropy; more than 512 is never needed and the kernel caps a write.
const (
	minSeed = 32
	maxSeed = 512
)

// entropyPool is the guest kernel's random pool: the real one in a guest,
// a recorder in tests (which must never feed the host's pool).
type entropyPool interface {
	// reseed credits seed to the pool and reseeds the CRNG from it.
	reseed(seed []byte) error
}

// ReseedRandom makes a VM restored from a template diverge from its
// siblings: until now it holds the template's CRNG state, so every clone
// would draw the same "random" bytes.
func (s *service) ReseedRandom(ctx context.Context, r *agentapi.ReseedRandomRequest) (*agentapi.Empty, error) {
	if n := len(r.Seed); n < minSeed || n > maxSeed {
		return nil, errf(codes.InvalidArgument, "seed of %d bytes: want %d to %d", n, minSeed, maxSeed)
	}
	if err := s.entropy.reseed(r.Seed); err != nil {
		return nil, errf(codes.Internal, "reseed the guest's random pool: %v", err)
	}
	return &agentapi.Empty{}, nil
}

// guestEntropy is the kernel's pool, through /dev/urandom's ioctls.
type guestEntropy struct{}

var _ entropyPool = guestEntropy{}

func (guestEntropy) reseed(seed []byte) error {
	f, err := os.OpenFile("/dev/urandom", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }:
	// the host's bytes come from its CSPRNG, so all of them count.
	b := make([]byte, 8+len(seed))
	binary.NativeEndian.PutUint32(b[0:], uint32(8*len(seed)))
	binary.NativeEndian.PutUint32(b[4:], uint32(len(seed)))
	copy(b[8:], seed)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDADDENTROPY, uintptr(unsafe.Pointer(&b[0]))); e != 0 {
		return fmt.Errorf("RNDADDENTROPY: %w", e)
	}
	// Crediting alone leaves the CRNG on its old key until its next
	// scheduled reseed; force it now.
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.RNDRESEEDCRNG, 0); e != 0 {
		return fmt.Errorf("RNDRESEEDCRNG: %w", e)
	}
	return nil
}

// PrepareTemplate: the host is about to save this VM as a template and
// will hang up first. The guest first runs a throwaway container (see
// warmUp). The hang-up must not power the VM off as a lost shim's does;
// the next host to connect is a clone's.
func (s *service) PrepareTemplate(ctx context.Context, _ *agentapi.Empty) (*agentapi.Empty, error) {
	if s.warmRoot != nil {
		if err := s.warmUp(ctx); err != nil {
			return nil, errf(codes.Internal, "template warm-up: %v", err)
		}
	}
	if s.forTemplate != nil {
		s.forTemplate()
	}
	return &agentapi.Empty{}, nil
}
