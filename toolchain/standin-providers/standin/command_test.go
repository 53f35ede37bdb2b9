package standin

import (
	"context"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// logged collects what the resources report to the engine.
type logged struct {
	mu    sync.Mutex
	lines []string
}

func (l *logged) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return WithLogger(ctx, func(msg string, _ bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.lines = append(l.lines, msg)
	})
}

func (l *logged) all() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.lines...)
}

func checked(t *testing.T, r Resource, news Props) Props {
	t.Helper()
	out, failures := r.Check("test", news)
	if len(failures) > 0 {
		t.Fatalf("check failed: %+v", failures)
	}
	return out
}

func TestACommandRunsOnCreateAndCapturesItsOutput(t *testing.T) {
	server := startSSHServer(t)
	var log logged
	cmd := &RemoteCommand{}
	in := checked(t, cmd, Props{"connection": server.connection(), "create": "echo hello world",
		"environment": map[string]any{"GREETING": "hi"}})
	id, outs, err := cmd.Create(withResourceName(log.ctx(t), "setup"), in)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^setup[0-9a-f]{8}$`).MatchString(id) {
		t.Fatalf("id %q is not the name plus 8 hex digits", id)
	}
	if outs["stdout"] != "hello world" || outs["stderr"] != "" || outs["create"] != "echo hello world" {
		t.Fatalf("outputs: %v", outs)
	}
	if got := strings.Join(log.all(), "|"); !strings.Contains(got, "hello world") {
		t.Fatalf("the output line was not logged: %q", got)
	}
	if env := server.env(); env["GREETING"] != "hi" {
		t.Fatalf("environment not sent: %v", env)
	}
	in["create"], in["stdin"] = "cat", "from stdin\n\n"
	if _, outs, err := cmd.Create(context.Background(), in); err != nil || outs["stdout"] != "from stdin\n" {
		t.Fatalf("stdin: %v %q (only one trailing newline is trimmed)", err, outs["stdout"])
	}
}

func TestAFailedCommandReadsLikeTheRealProvider(t *testing.T) {
	server := startSSHServer(t)
	var log logged
	cmd := &RemoteCommand{}
	in := checked(t, cmd, Props{"connection": server.connection(), "create": "nosuch --flag", "logging": "none"})
	id, _, err := cmd.Create(log.ctx(t), in)
	want := "Process exited with status 127: running \"nosuch --flag\":\nsh: 1: nosuch: not found\n"
	if err == nil || err.Error() != want || id != "" {
		t.Fatalf("got id %q, error %q; want %q", id, err, want)
	}
	if len(log.all()) != 0 {
		t.Fatalf("logging none still logged %v", log.all())
	}
}

func TestAnUpdateRunsCreateAgainWithThePreviousOutput(t *testing.T) {
	server := startSSHServer(t)
	cmd := &RemoteCommand{}
	olds := Props{"connection": server.connection(), "create": "echo one", "stdout": "one", "stderr": ""}
	news := checked(t, cmd, Props{"connection": server.connection(), "create": "printenv PULUMI_COMMAND_STDOUT"})
	outs, err := cmd.Update(context.Background(), "x", olds, news)
	if err != nil || outs["stdout"] != "one" {
		t.Fatalf("update: %v, outputs %v", err, outs)
	}
	news["update"] = "warn changed"
	outs, err = cmd.Update(context.Background(), "x", outs, news)
	if err != nil || outs["stdout"] != "" || outs["stderr"] != "changed" {
		t.Fatalf("update command: %v, outputs %v", err, outs)
	}
}

func TestARefusedEnvironmentFailsButARefusedPreviousOutputDoesNot(t *testing.T) {
	server := startSSHServer(t)
	server.refuseEnvironment()
	cmd := &RemoteCommand{}
	news := checked(t, cmd, Props{"connection": server.connection(), "create": "echo ok"})
	outs, err := cmd.Update(context.Background(), "x", Props{"stdout": "before"}, news)
	if err != nil || outs["stdout"] != "ok" {
		t.Fatalf("previous output refused: %v %v", err, outs)
	}
	news["environment"] = map[string]any{"A": "1"}
	_, err = cmd.Update(context.Background(), "x", Props{}, news)
	if err == nil || err.Error() != `could not set environment variable "A": ssh: setenv failed` {
		t.Fatalf("environment refused: %v", err)
	}
}

func TestDialingGivesUpAfterTheDialErrorLimit(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().(*net.TCPAddr)
	_ = listener.Close() // nothing listens there now
	var log logged
	cmd := &RemoteCommand{}
	in := checked(t, cmd, Props{"create": "echo", "connection": map[string]any{
		"host": "127.0.0.1", "port": float64(addr.Port), "password": "x", "dialErrorLimit": 2.0}})
	_, _, err = cmd.Create(log.ctx(t), in)
	want := "after 2 failed attempts: dial tcp " + addr.String() + ": connect: connection refused"
	if err == nil || err.Error() != want {
		t.Fatalf("got %v, want %q", err, want)
	}
	if got := strings.Join(log.all(), "|"); got != "Dial 1/2 failed: retrying|Dial 2/2 failed: retrying" {
		t.Fatalf("status lines: %q", got)
	}
}

func TestDialingStopsWhenTheDeadlinePasses(t *testing.T) {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := listener.Addr().(*net.TCPAddr)
	_ = listener.Close()
	conn, _ := parseConnection(map[string]any{"host": "127.0.0.1", "port": float64(addr.Port), "dialErrorLimit": -1.0})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = conn.dial(ctx)
	if err == nil || !strings.Contains(err.Error(), "context deadline exceeded") || time.Since(start) > 2*time.Second {
		t.Fatalf("unlimited dials must stop at the deadline: %v after %s", err, time.Since(start))
	}
}

func TestTheSSHAgentAuthenticates(t *testing.T) {
	server := startSSHServer(t)
	keyring := agent.NewKeyring()
	block, _ := pem.Decode([]byte(server.clientKeyPEM))
	key, err := ssh.ParseRawPrivateKey(pem.EncodeToMemory(block))
	if err != nil {
		t.Fatal(err)
	}
	if err := keyring.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatal(err)
	}
	socket := filepath.Join(t.TempDir(), "agent.sock")
	listener, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = listener.Close() })
	go func() {
		for {
			c, err := listener.Accept()
			if err != nil {
				return
			}
			go func() { _ = agent.ServeAgent(keyring, c) }()
		}
	}()
	conn := server.connection()
	delete(conn, "privateKey")
	conn["agentSocketPath"] = socket
	cmd := &RemoteCommand{}
	if _, outs, err := cmd.Create(context.Background(), checked(t, cmd, Props{"connection": conn, "create": "echo via agent"})); err != nil || outs["stdout"] != "via agent" {
		t.Fatalf("agent: %v %v", err, outs)
	}
}

func TestAHostKeyThatDoesNotMatchFails(t *testing.T) {
	server := startSSHServer(t)
	other, _ := newKey(t)
	cmd := &RemoteCommand{}
	conn := server.connection()
	conn["dialErrorLimit"] = 0.0
	conn["hostKey"] = string(ssh.MarshalAuthorizedKey(other.PublicKey()))
	_, _, err := cmd.Create(context.Background(), checked(t, cmd, Props{"connection": conn, "create": "echo"}))
	if err == nil || !strings.Contains(err.Error(), "host key mismatch") {
		t.Fatalf("a wrong host key must fail, got %v", err)
	}
	conn["hostKey"] = string(ssh.MarshalAuthorizedKey(server.hostKey))
	if _, _, err := cmd.Create(context.Background(), checked(t, cmd, Props{"connection": conn, "create": "echo"})); err != nil {
		t.Fatalf("the right host key: %v", err)
	}
}

func writeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "site")
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func readRemote(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func TestCopyToRemoteCopiesADirectoryWithTheRealTrailingSlashRule(t *testing.T) {
	server := startSSHServer(t)
	source := writeTree(t, map[string]string{"index.html": "hi", "conf/app.yaml": "a: 1"})
	remote := t.TempDir()
	copier := &CopyToRemote{}
	for _, tc := range []struct{ source, remotePath, want string }{
		{source, filepath.Join(remote, "named"), filepath.Join(remote, "named", "site")},
		{source + "/", filepath.Join(remote, "flat", "deep"), filepath.Join(remote, "flat", "deep")},
	} {
		archive := &resource.Archive{Sig: resource.ArchiveSig, Path: tc.source}
		in := checked(t, copier, Props{"connection": server.connection(), "source": archive, "remotePath": tc.remotePath})
		if _, _, err := copier.Create(context.Background(), in); err != nil {
			t.Fatal(err)
		}
		if readRemote(t, filepath.Join(tc.want, "index.html")) != "hi" ||
			readRemote(t, filepath.Join(tc.want, "conf", "app.yaml")) != "a: 1" {
			t.Fatalf("%s -> %s: files not under %s", tc.source, tc.remotePath, tc.want)
		}
	}
}

func TestATextAssetIsWrittenToAFileAndNeverToADirectory(t *testing.T) {
	server := startSSHServer(t)
	remote := t.TempDir()
	copier := &CopyToRemote{}
	text, _ := resource.NewTextAsset("port: 8080\n")
	target := filepath.Join(remote, "etc", "app.yaml")
	in := checked(t, copier, Props{"connection": server.connection(), "source": text, "remotePath": target})
	if _, _, err := copier.Create(context.Background(), in); err != nil || readRemote(t, target) != "port: 8080\n" {
		t.Fatalf("text asset: %v", err)
	}
	in["remotePath"] = remote
	_, _, err := copier.Create(context.Background(), in)
	if err == nil || !strings.Contains(err.Error(), "is a directory; when using a text asset, remotePath must be a file path") {
		t.Fatalf("text asset to a directory: %v", err)
	}
}

func TestCopyToRemoteRefusesWhatTheRealV121Refuses(t *testing.T) {
	assets, _ := resource.NewAssetArchive(map[string]any{"a.txt": mustText(t, "a")})
	uri := &resource.Asset{Sig: resource.AssetSig, URI: "https://example.com/a.txt", Hash: "00"}
	for source, want := range map[any]string{
		assets:  "archive must be a path to a file or directory",
		uri:     "asset must be a path-based file asset or a text asset",
		Unknown: "either asset or archive must be set",
	} {
		_, failures := (&CopyToRemote{}).Check("copy", Props{"connection": Unknown, "source": source, "remotePath": "/x"})
		if len(failures) != 1 || failures[0].Reason != want {
			t.Fatalf("%T: got %+v, want %q", source, failures, want)
		}
	}
}

func mustText(t *testing.T, text string) *resource.Asset {
	t.Helper()
	a, err := resource.NewTextAsset(text)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAnUpdateCopiesAgainOnlyWhenTheSourceOrPathChanged(t *testing.T) {
	server := startSSHServer(t)
	target := filepath.Join(t.TempDir(), "motd")
	copier := &CopyToRemote{}
	olds := checked(t, copier, Props{"connection": server.connection(), "source": mustText(t, "v1"), "remotePath": target})
	if _, _, err := copier.Create(context.Background(), olds); err != nil {
		t.Fatal(err)
	}
	newConnection := server.connection()
	newConnection["perDialTimeout"] = 9.0
	news := checked(t, copier, Props{"connection": newConnection, "source": mustText(t, "v1"), "remotePath": target})
	if _, err := copier.Update(context.Background(), "id", olds, news); err != nil {
		t.Fatal(err)
	}
	if logins, _, sessions := server.stats(); logins != 1 || sessions != 1 {
		t.Fatalf("a new connection alone copied again: %d logins, %d sftp sessions", logins, sessions)
	}
	news["source"] = mustText(t, "v2")
	if _, err := copier.Update(context.Background(), "id", olds, news); err != nil || readRemote(t, target) != "v2" {
		t.Fatalf("a new text was not copied: %v", err)
	}
}

func TestAssetsAndArchivesCompareByContent(t *testing.T) {
	archive := func(text string) *resource.Archive {
		a, err := resource.NewAssetArchive(map[string]any{"index.html": mustText(t, text)})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	if !Equal(archive("same"), archive("same")) || !Equal([]any{archive("same")}, []any{archive("same")}) {
		t.Fatal("identical archives must be equal")
	}
	if Equal(mustText(t, "a"), mustText(t, "b")) || Equal(archive("a"), archive("b")) || Equal(mustText(t, "a"), "a") {
		t.Fatal("different contents must differ")
	}
	copier := &CopyToRemote{}
	state := Props{"source": archive("x"), "remotePath": "/srv", "triggers": []any{"1"}}
	if d := diff(copier, state, state, Props{"source": archive("x"), "remotePath": "/srv", "triggers": []any{"1"}}, nil); d.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("an unchanged archive: %+v", d)
	}
	changed := diff(copier, state, state, Props{"source": archive("y"), "remotePath": "/srv", "triggers": []any{"2"}}, nil)
	if changed.DetailedDiff["source"].GetKind() != pulumirpc.PropertyDiff_UPDATE ||
		changed.DetailedDiff["triggers"].GetKind() != pulumirpc.PropertyDiff_UPDATE_REPLACE {
		t.Fatalf("a new text updates, new triggers replace: %+v", changed.DetailedDiff)
	}
}

// Through the provider's gRPC methods: the connection comes back secret, a secret source stays
// secret, and the asset survives the round trip.
func TestTheConnectionIsAlwaysSecretAndAssetsPassThrough(t *testing.T) {
	server := startSSHServer(t)
	p := &Provider{Name: "command", Version: "1.2.1", Resources: map[string]Resource{"command:remote:CopyToRemote": &CopyToRemote{}}}
	conn := FromPlain(server.connection(), nil)
	inputs := resource.PropertyMap{
		"connection": resource.NewObjectProperty(conn),
		"source":     resource.MakeSecret(resource.NewAssetProperty(mustText(t, "secret text"))),
		"remotePath": resource.NewStringProperty(filepath.Join(t.TempDir(), "token")),
	}
	props, err := plugin.MarshalProperties(inputs, inOpts)
	if err != nil {
		t.Fatal(err)
	}
	urn := "urn:pulumi:dev::clawdet::command:remote:CopyToRemote::token"
	checkedInputs, err := p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: urn, News: props})
	if err != nil || len(checkedInputs.GetFailures()) > 0 {
		t.Fatalf("check: %v %v", err, checkedInputs.GetFailures())
	}
	created, err := p.Create(context.Background(), &pulumirpc.CreateRequest{Urn: urn, Properties: checkedInputs.GetInputs()})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := plugin.UnmarshalProperties(created.GetProperties(), inOpts)
	if err != nil {
		t.Fatal(err)
	}
	if !outs["connection"].IsSecret() || !outs["source"].IsSecret() || outs["remotePath"].IsSecret() {
		t.Fatalf("secrets: %v", outs)
	}
	if a := outs["source"].SecretValue().Element; !a.IsAsset() || a.AssetValue().Text != "secret text" {
		t.Fatalf("source after the round trip: %v", a)
	}
	if readRemote(t, outs["remotePath"].StringValue()) != "secret text" {
		t.Fatal("not copied")
	}
}

func TestAResourceTheStandInLacksNamesTheRealPlugin(t *testing.T) {
	p := &Provider{Name: "command", Version: "1.2.1", Resources: map[string]Resource{
		"command:remote:Command": &RemoteCommand{}, "command:remote:CopyToRemote": &CopyToRemote{}}}
	_, err := p.Check(context.Background(), &pulumirpc.CheckRequest{Urn: "urn:pulumi:dev::p::command:local:Command::c"})
	want := "does not implement command:local:Command (only command:remote:Command, command:remote:CopyToRemote); " +
		"install the real plugin (pulumi plugin install resource command 1.2.1)"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("got %v", err)
	}
}
