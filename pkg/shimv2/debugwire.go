package shimv2

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"sync"
)

// The debug shell's wire between `containerd-shim-kata-v2 exec` and the
// pod's shim, over DebugSocketName in the pod's state directory (root
// only): one JSON hello line each way, then frames of a type byte, a
// big-endian uint32 length and the payload.

// DebugSocketName is the debug shell socket in each pod's state directory.
const DebugSocketName = "debug.sock"

const (
	frameData   = 'd' // terminal bytes, either way
	frameResize = 'r' // client → shim: rows, cols (uint16 each)
	frameExit   = 'x' // shim → client: the shell's exit status (int32)
	maxFrame    = 64 << 10
	maxHello    = 4 << 10
)

type debugHello struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

type debugHelloReply struct {
	Error string `json:"error,omitempty"`
}

// debugWire frames one connection. Writes are serialised; one goroutine reads.
type debugWire struct {
	r *bufio.Reader
	// mu serialises frame writes to c.
	mu sync.Mutex
	c  net.Conn
}

func newDebugWire(c net.Conn) *debugWire { return &debugWire{r: bufio.NewReader(c), c: c} }

func (w *debugWire) writeJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	_, err = w.c.Write(append(b, '\n'))
	return err
}

func (w *debugWire) readJSON(v any) error {
	line, err := w.r.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return errors.New("debug shell: hello too long")
		}
		return err
	}
	if len(line) > maxHello {
		return errors.New("debug shell: hello too long")
	}
	return json.Unmarshal(line, v)
}

func (w *debugWire) writeFrame(typ byte, p []byte) error {
	if len(p) > maxFrame {
		return fmt.Errorf("debug shell: %d-byte frame, at most %d", len(p), maxFrame)
	}
	hdr := [5]byte{typ}
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(p)))
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.c.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.c.Write(p)
	return err
}

func (w *debugWire) readFrame() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(w.r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("debug shell: %d-byte frame, at most %d", n, maxFrame)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(w.r, p); err != nil {
		return 0, nil, err
	}
	return hdr[0], p, nil
}

func resizePayload(rows, cols uint16) []byte {
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, rows), cols)
}

// DebugClient is the operator's end of a debug shell.
type DebugClient struct{ w *debugWire }

// DialDebugShell opens a debug shell in the VM of the pod whose state
// directory is stateDir, with a terminal of rows×cols. The shim refuses
// (with its reason as the error) unless the pod allows debug shells.
func DialDebugShell(stateDir string, rows, cols uint16) (*DebugClient, error) {
	c, err := net.Dial("unix", filepath.Join(stateDir, DebugSocketName))
	if err != nil {
		return nil, fmt.Errorf("connect to the pod's shim: %w", err)
	}
	w := newDebugWire(c)
	var reply debugHelloReply
	err = w.writeJSON(debugHello{Rows: rows, Cols: cols})
	if err == nil {
		err = w.readJSON(&reply)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("debug shell handshake: %w", err)
	}
	if reply.Error != "" {
		c.Close()
		return nil, errors.New(reply.Error)
	}
	return &DebugClient{w: w}, nil
}

// Write sends terminal input.
func (d *DebugClient) Write(p []byte) (int, error) {
	for off := 0; off < len(p); off += maxFrame {
		if err := d.w.writeFrame(frameData, p[off:min(off+maxFrame, len(p))]); err != nil {
			return off, err
		}
	}
	return len(p), nil
}

// Resize tells the guest terminal its new size.
func (d *DebugClient) Resize(rows, cols uint16) error {
	return d.w.writeFrame(frameResize, resizePayload(rows, cols))
}

// Copy writes the shell's output to out until it ends and returns its exit
// status.
func (d *DebugClient) Copy(out io.Writer) (int, error) {
	for {
		typ, p, err := d.w.readFrame()
		if err != nil {
			return -1, fmt.Errorf("debug shell ended without an exit status: %w", err)
		}
		switch typ {
		case frameData:
			if _, err := out.Write(p); err != nil {
				return -1, err
			}
		case frameExit:
			if len(p) != 4 {
				return -1, errors.New("debug shell: bad exit frame")
			}
			return int(int32(binary.BigEndian.Uint32(p))), nil
		}
	}
}

// Close ends the connection; the shim then ends the shell.
func (d *DebugClient) Close() error { return d.w.c.Close() }
