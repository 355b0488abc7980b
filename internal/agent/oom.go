package agent

import (
	"bufio"
	"context"
	"os"
	"strings"
	"sync"
)

// oomQueue holds OOM kills until the host's GetOOMEvent long poll takes them.
type oomQueue struct {
	// mu guards pending; ready is signalled (non-blocking) after each push.
	mu      sync.Mutex
	pending []string
	ready   chan struct{}
}

func newOOMQueue() *oomQueue { return &oomQueue{ready: make(chan struct{}, 1)} }

func (q *oomQueue) push(id string) {
	q.mu.Lock()
	q.pending = append(q.pending, id)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop blocks until an event is queued or ctx ends.
func (q *oomQueue) pop(ctx context.Context) (string, error) {
	for {
		q.mu.Lock()
		if len(q.pending) > 0 {
			id := q.pending[0]
			q.pending = q.pending[1:]
			more := len(q.pending) > 0
			q.mu.Unlock()
			if more {
				select {
				case q.ready <- struct{}{}:
				default:
				}
			}
			return id, nil
		}
		q.mu.Unlock()
		select {
		case <-q.ready:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}

// watch forwards a container's OOM notifications until the channel closes.
func (q *oomQueue) watch(id string, ch <-chan struct{}) {
	go func() {
		for range ch {
			q.push(id)
		}
	}()
}

// oomKilled reads the oom_kill counter of the container's cgroup (cgroup v2
// memory.events); the cgroup outlives its processes until RemoveContainer.
func oomKilled(id string) bool {
	f, err := os.Open("/sys/fs/cgroup" + cgroupParent + "/" + id + "/memory.events")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), " ")
		if ok && k == "oom_kill" {
			return v != "0"
		}
	}
	return false
}
