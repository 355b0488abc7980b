// Package channel holds what both ends of the agent channel agree on: where
// the agent listens, and the handshake that proves a connection comes from
// the pod's own shim before a single ttrpc byte is read.
//
// The handshake, on every transport:
//
//	agent -> host  "KATA-GO-AGENT-READY <nonce: 64 hex digits>\n"
//	host  -> agent "AUTH <HMAC-SHA256(secret, context || nonce): 64 hex digits>\n"
//	agent -> host  "OK\n"        (or the agent closes the connection)
//
// The secret is 32 random bytes per pod, handed to the guest out of band
// (a QEMU fw_cfg file, never the kernel command line). Any host user can
// open AF_VSOCK to a guest's CID, so a connection is worth nothing until it
// proves it holds the secret; the nonce makes a recorded proof useless.
package channel

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

const (
	// VsockPort is the agent's vsock port, as in Kata Containers.
	VsockPort = 1024
	// HostCID is the only vsock peer the agent accepts (VMADDR_CID_HOST).
	HostCID = 2
	// SerialPortName is the virtio-serial port name the agent looks for.
	SerialPortName = "agent.channel.0"
	// ReadyPrefix starts the line the agent writes once a host is
	// connected; the host reads it before it says anything, so no request
	// can reach a serial port the guest has not opened yet.
	ReadyPrefix = "KATA-GO-AGENT-READY "
	authPrefix  = "AUTH "
	okLine      = "OK"

	// SecretLen is the size of the per-pod secret.
	SecretLen = 32
	nonceLen  = 32
	// SecretFwCfgName is the fw_cfg file that carries the secret.
	SecretFwCfgName = "opt/io.kata-go/agent-secret"
	// SecretGuestPath is where the guest kernel shows that file.
	SecretGuestPath = "/sys/firmware/qemu_fw_cfg/by_name/" + SecretFwCfgName + "/raw"

	// maxLine bounds every handshake line either side reads.
	maxLine = 256
	// proofContext separates this MAC from any other use of the secret.
	proofContext = "kata-go agent channel v1\x00"
)

// ErrAuth is returned when a proof does not match.
var ErrAuth = errors.New("agent channel: authentication failed")

// NewSecret returns a fresh per-pod secret.
func NewSecret() ([]byte, error) {
	b := make([]byte, SecretLen)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("agent secret: %w", err)
	}
	return b, nil
}

// Nonces makes the agent's challenges. They must never repeat for one
// secret and must be unguessable without it; they need no entropy from
// the guest, whose random pool under emulation (no RDRAND) takes seconds
// to fill after boot and would stall the first connection. A challenge is
// HMAC-SHA256(secret, "nonce" || counter || a time stamp): the counter
// makes each one new within a boot, the secret is new for every pod.
type Nonces struct {
	secret []byte
	stamp  func() int64

	// mu guards next.
	mu   sync.Mutex
	next uint64
}

// NewNonces returns the challenge source of one agent; stamp is read for
// each challenge (the guest's boot time clock, say).
func NewNonces(secret []byte, stamp func() int64) *Nonces {
	return &Nonces{secret: secret, stamp: stamp}
}

// Next returns a challenge never handed out before by this source.
func (n *Nonces) Next() []byte {
	n.mu.Lock()
	c := n.next
	n.next++
	n.mu.Unlock()
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], c)
	binary.BigEndian.PutUint64(b[8:], uint64(n.stamp()))
	m := hmac.New(sha256.New, n.secret)
	m.Write([]byte("nonce\x00"))
	m.Write(b[:])
	return m.Sum(nil)
}

// Proof is what the host answers a nonce with.
func Proof(secret, nonce []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(proofContext))
	m.Write(nonce)
	return m.Sum(nil)
}

// ReadyLine is the agent's first line.
func ReadyLine(nonce []byte) string { return ReadyPrefix + hex.EncodeToString(nonce) + "\n" }

// ParseReady reads the nonce out of a ready line (without its newline).
func ParseReady(line string) ([]byte, error) {
	h, ok := strings.CutPrefix(line, ReadyPrefix)
	if !ok {
		return nil, fmt.Errorf("agent channel: unexpected line %q, want the agent's ready line", truncate(line))
	}
	n, err := hex.DecodeString(h)
	if err != nil || len(n) != nonceLen {
		return nil, fmt.Errorf("agent channel: malformed nonce in ready line %q", truncate(line))
	}
	return n, nil
}

// AuthLine is the host's answer to a nonce.
func AuthLine(secret, nonce []byte) string {
	return authPrefix + hex.EncodeToString(Proof(secret, nonce)) + "\n"
}

// CheckAuth verifies the host's answer in constant time.
func CheckAuth(line string, secret, nonce []byte) error {
	h, ok := strings.CutPrefix(line, authPrefix)
	if !ok {
		return ErrAuth
	}
	got, err := hex.DecodeString(h)
	if err != nil || !hmac.Equal(got, Proof(secret, nonce)) {
		return ErrAuth
	}
	return nil
}

// OKLine is the agent's last handshake line.
const OKLine = okLine + "\n"

// IsOK reports whether a line (without newline) is the agent's acceptance.
func IsOK(line string) bool { return line == okLine }

// ReadLine reads one line byte by byte, so nothing after it is consumed
// (it belongs to ttrpc), and refuses lines longer than the handshake's.
func ReadLine(r io.Reader) (string, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) <= maxLine {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return string(line), nil
		}
		line = append(line, b[0])
	}
	return "", errors.New("agent channel: handshake line too long")
}

// Accept is the agent's side of the handshake on a fresh connection: it
// challenges the peer with nonce (never used before with this secret) and
// returns nil only if the peer proved it holds secret. The caller bounds
// it with a deadline on conn.
func Accept(conn io.ReadWriter, secret, nonce []byte) error {
	if len(secret) != SecretLen {
		return fmt.Errorf("agent channel: secret is %d bytes, want %d", len(secret), SecretLen)
	}
	if len(nonce) != nonceLen {
		return fmt.Errorf("agent channel: nonce is %d bytes, want %d", len(nonce), nonceLen)
	}
	var line string
	for {
		if _, err := io.WriteString(conn, ReadyLine(nonce)); err != nil {
			return fmt.Errorf("agent channel: write ready line: %w", err)
		}
		var err error
		if line, err = ReadLine(conn); err != nil {
			return fmt.Errorf("agent channel: read proof: %w", err)
		}
		// An empty line is a host that never saw the greeting (on a
		// serial port it went to a host connection that has since gone):
		// greet again, with the same challenge. The caller's deadline
		// bounds how often.
		if line != "" {
			break
		}
	}
	if err := CheckAuth(line, secret, nonce); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, OKLine); err != nil {
		return fmt.Errorf("agent channel: write OK: %w", err)
	}
	return nil
}

// nudgeEvery is how long the host waits for a greeting before it asks
// for one again (an empty line).
const nudgeEvery = 250 * time.Millisecond

// Connect is the host's side: it waits for the agent's ready line, proves
// it holds secret and waits for the agent's OK. The caller bounds it with
// a deadline on conn.
//
// On a virtio-serial port the host's socket and the guest's open of the
// port come and go separately: a greeting can go to a host connection
// that has just closed, and the agent would then wait for a proof that
// never comes. So while no greeting has arrived, the host sends an empty
// line now and then, which makes the agent greet again (a port not open
// yet drops it, harmlessly).
func Connect(conn io.ReadWriter, secret []byte) error {
	if len(secret) != SecretLen {
		return fmt.Errorf("agent channel: secret is %d bytes, want %d", len(secret), SecretLen)
	}
	greeted := make(chan struct{})
	nudged := make(chan struct{})
	go func() {
		defer close(nudged)
		t := time.NewTicker(nudgeEvery)
		defer t.Stop()
		for {
			select {
			case <-greeted:
				return
			case <-t.C:
				if _, err := io.WriteString(conn, "\n"); err != nil {
					return
				}
			}
		}
	}()
	line, err := ReadLine(conn)
	close(greeted)
	<-nudged // no nudge may follow the proof
	if err != nil {
		return fmt.Errorf("agent channel: wait for ready line: %w", err)
	}
	nonce, err := ParseReady(line)
	if err != nil {
		return err
	}
	if _, err := io.WriteString(conn, AuthLine(secret, nonce)); err != nil {
		return fmt.Errorf("agent channel: send proof: %w", err)
	}
	for {
		line, err = ReadLine(conn)
		if err != nil {
			// The agent closes the connection on a wrong proof (or when
			// the pod's shim is connected already): either way, final.
			return fmt.Errorf("%w: the agent refused the proof (%v): is this the pod's secret, and its only client?", ErrAuth, err)
		}
		again, perr := ParseReady(line)
		if perr != nil {
			break
		}
		if !hmac.Equal(again, nonce) {
			// A new challenge: the agent dropped this handshake (on a
			// serial port it reopens the port and greets again on the
			// same host socket).
			return fmt.Errorf("%w: the agent refused the proof and started over: is this the pod's secret?", ErrAuth)
		}
		// The same challenge again: the answer to a nudge that crossed
		// the greeting; the proof already sent answers it.
	}
	if !IsOK(line) {
		return fmt.Errorf("agent channel: unexpected answer %q to the proof", truncate(line))
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
