package channel

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// Challenges never repeat, even with a clock that stands still, and differ
// between pods (secrets) for the same counter and time.
func TestNoncesNeverRepeat(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, SecretLen)
	n := NewNonces(secret, func() int64 { return 42 })
	seen := map[string]bool{}
	for i := 0; i < 10000; i++ {
		k := string(n.Next())
		if seen[k] {
			t.Fatalf("nonce repeated after %d", i)
		}
		seen[k] = true
	}
	other := NewNonces(bytes.Repeat([]byte{2}, SecretLen), func() int64 { return 42 })
	if bytes.Equal(other.Next(), NewNonces(secret, func() int64 { return 42 }).Next()) {
		t.Fatal("two secrets gave the same first nonce")
	}
}

func TestProofChecks(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, SecretLen)
	nonce := NewNonces(secret, func() int64 { return 1 }).Next()
	line := AuthLine(secret, nonce)
	if err := CheckAuth(line[:len(line)-1], secret, nonce); err != nil {
		t.Fatalf("right proof refused: %v", err)
	}
	for _, bad := range []string{"", "AUTH ", "AUTH zz", "AUTH " + string(bytes.Repeat([]byte("0"), 64)), line[:len(line)-3]} {
		if CheckAuth(bad, secret, nonce) == nil {
			t.Errorf("proof %q accepted", bad)
		}
	}
	if _, err := ParseReady(ReadyPrefix + "abcd"); err == nil {
		t.Error("short nonce accepted")
	}
}

func FuzzParseReady(f *testing.F) {
	f.Add(ReadyLine(bytes.Repeat([]byte{7}, nonceLen)))
	f.Add("KATA-GO-AGENT-READY zz")
	f.Fuzz(func(t *testing.T, line string) {
		if n, err := ParseReady(line); err == nil && len(n) != nonceLen {
			t.Fatalf("accepted a %d-byte nonce", len(n))
		}
	})
}

// dropFirst loses the first write, as a greeting sent to a serial host
// connection that has just gone.
type dropFirst struct {
	net.Conn
	dropped bool
}

func (d *dropFirst) Write(p []byte) (int, error) {
	if !d.dropped {
		d.dropped = true
		return len(p), nil
	}
	return d.Conn.Write(p)
}

// A lost greeting does not leave both sides waiting: the host's nudge
// makes the agent greet again, and the handshake completes.
func TestLostGreetingIsRepeated(t *testing.T) {
	secret := bytes.Repeat([]byte{1}, SecretLen)
	agent, host := net.Pipe()
	defer agent.Close()
	defer host.Close()
	deadline := time.Now().Add(5 * time.Second)
	_ = agent.SetDeadline(deadline)
	_ = host.SetDeadline(deadline)
	done := make(chan error, 1)
	go func() {
		done <- Accept(&dropFirst{Conn: agent}, secret, NewNonces(secret, func() int64 { return 1 }).Next())
	}()
	if err := Connect(host, secret); err != nil {
		t.Fatalf("host: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("agent: %v", err)
	}
}
