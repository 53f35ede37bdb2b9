package standin

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
)

const (
	previousStdoutVar = "PULUMI_COMMAND_STDOUT"
	previousStderrVar = "PULUMI_COMMAND_STDERR"
)

// commandRun is one run of a shell command on the remote host, from a Command's properties.
type commandRun struct {
	command        string
	conn           sshConnection
	environment    map[string]string
	stdin          string
	logging        string // "stdout", "stderr", "stdoutAndStderr" (also when ""), "none"
	previousStdout string // sent as PULUMI_COMMAND_STDOUT/STDERR when addPreviousOutputInEnv
	previousStderr string
	sendPrevious   bool
}

func newCommandRun(command string, props Props) (commandRun, error) {
	conn, err := parseConnection(props["connection"])
	if err != nil {
		return commandRun{}, err
	}
	return commandRun{
		command: command, conn: conn, environment: StringMap(props, "environment"),
		stdin: Str(props, "stdin"), logging: Str(props, "logging"),
		previousStdout: Str(props, "stdout"), previousStderr: Str(props, "stderr"),
		sendPrevious: Bool(props, "addPreviousOutputInEnv", true),
	}, nil
}

// run executes the command like the real provider and returns its stdout and stderr without the
// trailing newline. A failure reads `<ssh error>: running "<command>":\n<stdout and stderr>`.
func (r commandRun) run(ctx context.Context) (stdout, stderr string, err error) {
	client, err := r.conn.dial(ctx)
	if err != nil {
		return "", "", err
	}
	defer client.Close()
	session, err := client.NewSession()
	if err != nil {
		return "", "", err
	}
	defer session.Close()

	keys := make([]string, 0, len(r.environment))
	for k := range r.environment {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := session.Setenv(k, r.environment[k]); err != nil {
			Warnf(ctx, "%s", setenvHint(k))
			return "", "", fmt.Errorf("could not set environment variable %q: %w", k, err)
		}
	}
	if r.sendPrevious {
		previous := [][2]string{{previousStdoutVar, r.previousStdout}, {previousStderrVar, r.previousStderr}}
		for _, kv := range previous {
			if kv[1] != "" && session.Setenv(kv[0], kv[1]) != nil {
				Warnf(ctx, "%s", setenvHint(kv[0])) // optional: the command runs anyway
			}
		}
	}
	if r.stdin != "" {
		session.Stdin = strings.NewReader(r.stdin)
	}

	var outBuf, errBuf bytes.Buffer
	combined := &lockedBuffer{}
	logReader, logWriter := io.Pipe()
	outWriters := []io.Writer{&outBuf, combined}
	errWriters := []io.Writer{&errBuf, combined}
	if r.logging == "" || r.logging == "stdout" || r.logging == "stdoutAndStderr" {
		outWriters = append(outWriters, logWriter)
	}
	if r.logging == "" || r.logging == "stderr" || r.logging == "stdoutAndStderr" {
		errWriters = append(errWriters, logWriter)
	}
	session.Stdout = io.MultiWriter(outWriters...)
	session.Stderr = io.MultiWriter(errWriters...)
	logged := make(chan struct{})
	go logLines(ctx, logReader, logged)

	stop := context.AfterFunc(ctx, func() { _ = client.Close() })
	err = session.Run(r.command)
	if !stop() && err != nil {
		err = fmt.Errorf("%w (the connection was closed: %v)", err, ctx.Err())
	}
	_ = logWriter.Close()
	<-logged
	if err != nil {
		return "", "", fmt.Errorf("%w: running %q:\n%s", err, r.command, combined.String())
	}
	return strings.TrimSuffix(outBuf.String(), "\n"), strings.TrimSuffix(errBuf.String(), "\n"), nil
}

func setenvHint(key string) string {
	return fmt.Sprintf("Unable to set '%s'. This only works if your SSH server is configured to accept these "+
		"variables via AcceptEnv. Alternatively, if a Bash-like shell runs the command on the remote host, you "+
		"could prefix the command itself with the variables in the form 'VAR=value command'", key)
}

// logLines reports each output line to the engine as it arrives (a status line, as the real
// provider does), then drains r so that the command never blocks on a line too long to scan.
func logLines(ctx context.Context, r io.Reader, done chan<- struct{}) {
	defer close(done)
	scanner := bufio.NewScanner(r)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		Logf(ctx, "%s", scanner.Text())
	}
	_, _ = io.Copy(io.Discard, r)
}

// lockedBuffer collects stdout and stderr, which the SSH session writes from two goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
