package standin

import (
	"fmt"
	"math"
	"net"
	"os"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// Defaults of the `connection` input, as in the real provider's schema.
var connectionDefaults = Props{"user": "root", "port": 22.0, "dialErrorLimit": 10.0, "perDialTimeout": 15.0}

const unlimitedDials = -1

// sshConnection is the `connection` input of command:remote:Command and CopyToRemote.
type sshConnection struct {
	host            string
	port            int
	user            string
	privateKey      *string
	keyPassword     *string
	password        *string
	hostKey         *string
	agentSocketPath *string
	dialErrorLimit  int
	perDialTimeout  time.Duration
}

// checkConnection validates the connection input and fills in its defaults; an unknown
// connection (a preview) passes as it is.
func checkConnection(v any) (any, []Failure) {
	if IsUnknown(v) {
		return v, nil
	}
	given := Object(v)
	if given == nil {
		return v, []Failure{{"connection", `missing required property "connection"`}}
	}
	conn := Props{}
	for k, d := range connectionDefaults {
		conn[k] = d
	}
	for k, e := range given {
		conn[k] = e
	}
	var failures []Failure
	if host, set := conn["host"]; !set || host == "" {
		failures = append(failures, Failure{"connection.host", `missing required property "host"`})
	}
	if proxy, set := conn["proxy"]; set && proxy != nil {
		failures = append(failures, Failure{"connection.proxy", "not supported by Clawdet's offline stand-in " +
			"command provider; install the real plugin (pulumi plugin install resource command 1.2.1)"})
	}
	for _, k := range []string{"port", "dialErrorLimit", "perDialTimeout"} {
		if n, ok := conn[k].(float64); ok && n != math.Trunc(n) {
			failures = append(failures, Failure{"connection." + k, fmt.Sprintf("%v is not a whole number", n)})
		}
	}
	if n, ok := conn["dialErrorLimit"].(float64); ok && n < unlimitedDials {
		failures = append(failures, Failure{"connection.dialErrorLimit", "must be -1 (unlimited) or more"})
	}
	return conn, failures
}

func parseConnection(v any) (sshConnection, error) {
	p := Object(v)
	if p == nil || Str(p, "host") == "" {
		return sshConnection{}, fmt.Errorf("connection: missing required property \"host\"")
	}
	number := func(key string) int {
		if n, ok := Num(p, key); ok {
			return int(n)
		}
		n, _ := Num(connectionDefaults, key)
		return int(n)
	}
	optional := func(key string) *string {
		if s, ok := p[key].(string); ok {
			return &s
		}
		return nil
	}
	c := sshConnection{
		host: Str(p, "host"), port: number("port"), user: Str(p, "user"),
		privateKey: optional("privateKey"), keyPassword: optional("privateKeyPassword"),
		password: optional("password"), hostKey: optional("hostKey"), agentSocketPath: optional("agentSocketPath"),
		dialErrorLimit: number("dialErrorLimit"),
		perDialTimeout: time.Duration(number("perDialTimeout")) * time.Second,
	}
	if c.user == "" {
		c.user = Str(connectionDefaults, "user")
	}
	return c, nil
}

func (c sshConnection) endpoint() string {
	return net.JoinHostPort(c.host, fmt.Sprint(c.port))
}

// clientConfig authenticates like the real provider: the private key, then the password (also
// for keyboard-interactive), then the SSH agent (agentSocketPath, else SSH_AUTH_SOCK). Without a
// hostKey any host key is accepted.
func (c sshConnection) clientConfig() (*ssh.ClientConfig, error) {
	config := &ssh.ClientConfig{User: c.user, HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: c.perDialTimeout}
	if c.hostKey != nil {
		key, _, _, _, err := ssh.ParseAuthorizedKey([]byte(*c.hostKey))
		if err != nil {
			return nil, fmt.Errorf("failed to parse host key: %w", err)
		}
		config.HostKeyCallback = ssh.FixedHostKey(key)
		config.HostKeyAlgorithms = []string{key.Type()}
	}
	if c.privateKey != nil {
		var signer ssh.Signer
		var err error
		if c.keyPassword != nil {
			signer, err = ssh.ParsePrivateKeyWithPassphrase([]byte(*c.privateKey), []byte(*c.keyPassword))
		} else {
			signer, err = ssh.ParsePrivateKey([]byte(*c.privateKey))
		}
		if err != nil {
			return nil, err
		}
		config.Auth = append(config.Auth, ssh.PublicKeys(signer))
	}
	if c.password != nil {
		password := *c.password
		config.Auth = append(config.Auth, ssh.Password(password),
			ssh.KeyboardInteractive(func(_, _ string, questions []string, _ []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i := range answers {
					answers[i] = password
				}
				return answers, nil
			}))
	}
	socket := c.agentSocketPath
	if socket == nil {
		if env := os.Getenv("SSH_AUTH_SOCK"); env != "" {
			socket = &env
		}
	}
	if socket != nil {
		conn, err := net.Dial("unix", *socket)
		if err != nil {
			return nil, err
		}
		config.Auth = append(config.Auth, ssh.PublicKeysCallback(agent.NewClient(conn).Signers))
	}
	return config, nil
}
