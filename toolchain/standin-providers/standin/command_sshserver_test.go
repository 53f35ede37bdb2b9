package standin

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// testSSHServer is an in-process SSH server on 127.0.0.1 with public-key auth, a tiny set of fake
// commands for "exec" and the "sftp" subsystem on the real file system.
type testSSHServer struct {
	host, port    string
	hostKey       ssh.PublicKey
	clientKeyPEM  string
	refuseEnv     bool
	mu            sync.Mutex
	logins        int
	commands      []string
	sftpSessions  int
	acceptedEnv   map[string]string
	clientKeyAuth []byte
}

func newKey(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(private)
	if err != nil {
		t.Fatal(err)
	}
	return signer, private
}

func startSSHServer(t *testing.T) *testSSHServer {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "") // no agent from the environment
	hostSigner, _ := newKey(t)
	clientSigner, clientPrivate := newKey(t)
	block, err := ssh.MarshalPrivateKey(clientPrivate, "")
	if err != nil {
		t.Fatal(err)
	}
	s := &testSSHServer{
		hostKey: hostSigner.PublicKey(), clientKeyPEM: string(pem.EncodeToMemory(block)),
		acceptedEnv: map[string]string{}, clientKeyAuth: clientSigner.PublicKey().Marshal(),
	}
	config := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(key.Marshal(), s.clientKeyAuth) {
			return nil, nil
		}
		return nil, fmt.Errorf("unknown key")
	}}
	config.AddHostKey(hostSigner)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = listener.Close() })
	s.host, s.port, _ = net.SplitHostPort(listener.Addr().String())
	go func() {
		for {
			conn, err := listener.Accept()
			if err != nil {
				return
			}
			go s.serve(conn, config)
		}
	}()
	return s
}

// connection is the `connection` input that reaches this server.
func (s *testSSHServer) connection() map[string]any {
	port, _ := strconv.Atoi(s.port)
	return map[string]any{"host": s.host, "port": float64(port), "user": "root", "privateKey": s.clientKeyPEM,
		"dialErrorLimit": 1.0, "perDialTimeout": 5.0}
}

func (s *testSSHServer) stats() (logins int, commands []string, sftpSessions int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins, append([]string(nil), s.commands...), s.sftpSessions
}

func (s *testSSHServer) refuseEnvironment() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseEnv = true
}

func (s *testSSHServer) env() map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.acceptedEnv)
}

func (s *testSSHServer) serve(conn net.Conn, config *ssh.ServerConfig) {
	_, channels, requests, err := ssh.NewServerConn(conn, config)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.logins++
	s.mu.Unlock()
	go ssh.DiscardRequests(requests)
	for newChannel := range channels {
		if newChannel.ChannelType() != "session" {
			_ = newChannel.Reject(ssh.UnknownChannelType, "sessions only")
			continue
		}
		channel, requests, err := newChannel.Accept()
		if err != nil {
			continue
		}
		go s.session(channel, requests)
	}
}

func (s *testSSHServer) session(channel ssh.Channel, requests <-chan *ssh.Request) {
	env := map[string]string{}
	for req := range requests {
		switch req.Type {
		case "env":
			var kv struct{ Name, Value string }
			_ = ssh.Unmarshal(req.Payload, &kv)
			s.mu.Lock()
			accept := !s.refuseEnv
			if accept {
				env[kv.Name] = kv.Value
				s.acceptedEnv[kv.Name] = kv.Value
			}
			s.mu.Unlock()
			_ = req.Reply(accept, nil)
		case "exec":
			var payload struct{ Command string }
			_ = ssh.Unmarshal(req.Payload, &payload)
			_ = req.Reply(true, nil)
			s.mu.Lock()
			s.commands = append(s.commands, payload.Command)
			s.mu.Unlock()
			go func() {
				status := fakeShell(payload.Command, env, channel, channel, channel.Stderr())
				_, _ = channel.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
				_ = channel.Close()
			}()
		case "subsystem":
			var payload struct{ Name string }
			_ = ssh.Unmarshal(req.Payload, &payload)
			_ = req.Reply(payload.Name == "sftp", nil)
			if payload.Name == "sftp" {
				s.mu.Lock()
				s.sftpSessions++
				s.mu.Unlock()
				go func() {
					if server, err := sftp.NewServer(channel); err == nil {
						_ = server.Serve()
					}
					_ = channel.Close()
				}()
			}
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// fakeShell runs one of: echo ARGS, warn ARGS (to stderr), printenv NAME, cat, exit N, false.
func fakeShell(command string, env map[string]string, stdin io.Reader, stdout, stderr io.Writer) uint32 {
	words := strings.Fields(command)
	if len(words) == 0 {
		return 0
	}
	args := strings.Join(words[1:], " ")
	switch words[0] {
	case "echo":
		fmt.Fprintln(stdout, args)
	case "warn":
		fmt.Fprintln(stderr, args)
	case "printenv":
		value, ok := env[args]
		if !ok {
			return 1
		}
		fmt.Fprintln(stdout, value)
	case "cat":
		_, _ = io.Copy(stdout, stdin)
	case "false":
		return 1
	case "exit":
		n, _ := strconv.Atoi(args)
		return uint32(n)
	default:
		fmt.Fprintf(stderr, "sh: 1: %s: not found\n", words[0])
		return 127
	}
	return 0
}
