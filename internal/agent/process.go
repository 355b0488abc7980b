package agent

import (
	"sync"
	"time"
)

// process is one process of a container: its init (id "") or an exec.
type process struct {
	id    string
	pid   int
	stdio *stdio

	exited chan struct{} // closed once status and exitedAt are set
	// once guards the write of status and exitedAt.
	once     sync.Once
	status   exitStatus
	exitedAt time.Time
}

func newProcess(id string, io *stdio) *process {
	return &process{id: id, stdio: io, exited: make(chan struct{})}
}

// follow records the exit delivered on ch.
func (p *process) follow(ch <-chan exitStatus) {
	go func() {
		st := <-ch
		p.setExited(st)
	}()
}

func (p *process) setExited(st exitStatus) {
	p.once.Do(func() {
		p.status = st
		p.exitedAt = time.Now()
		close(p.exited)
	})
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}
