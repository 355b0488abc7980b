package shimv2

import (
	"context"
	"sync"

	"github.com/containerd/containerd/events"
	"github.com/containerd/containerd/runtime"
)

// eventQueue publishes events in order from one goroutine, so a TaskExit
// can never overtake the TaskStart before it.
type eventQueue struct {
	ctx       context.Context
	publisher publisher
	ch        chan event
	done      chan struct{}
	// mu guards closed and sending on ch: publishers hold it shared, close
	// exclusively, so no send can race the close.
	mu     sync.RWMutex
	closed bool
}

type event struct {
	topic string
	ev    events.Event
}

// publisher is the shim library's: closing it tells the library that
// every event went out, so the shim may exit.
type publisher interface {
	events.Publisher
	Close() error
}

func newEventQueue(ctx context.Context, p publisher) *eventQueue {
	q := &eventQueue{ctx: ctx, publisher: p, ch: make(chan event, 128), done: make(chan struct{})}
	go q.run()
	return q
}

func (q *eventQueue) run() {
	defer close(q.done)
	for e := range q.ch {
		_ = q.publisher.Publish(q.ctx, e.topic, e.ev)
	}
	_ = q.publisher.Close()
}

// publish queues an event; after close it is dropped (the shim is exiting).
func (q *eventQueue) publish(topic string, ev events.Event) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return
	}
	q.ch <- event{topic, ev}
}

// close drains what is queued and stops.
func (q *eventQueue) close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.ch)
	}
	q.mu.Unlock()
	<-q.done
}

var (
	topicCreate      = runtime.TaskCreateEventTopic
	topicStart       = runtime.TaskStartEventTopic
	topicExit        = runtime.TaskExitEventTopic
	topicDelete      = runtime.TaskDeleteEventTopic
	topicExecAdded   = runtime.TaskExecAddedEventTopic
	topicExecStarted = runtime.TaskExecStartedEventTopic
	topicPaused      = runtime.TaskPausedEventTopic
	topicResumed     = runtime.TaskResumedEventTopic
	topicOOM         = runtime.TaskOOMEventTopic
)
