package agent

import (
	"errors"

	"golang.org/x/sys/unix"
)

func isEIO(err error) bool { return errors.Is(err, unix.EIO) }
