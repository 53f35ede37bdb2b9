package standin

import (
	"context"
	"fmt"
	"maps"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// RemoteCommand is command:remote:Command: a shell command run over SSH on create (`create`), on
// every update (`update`, else `create` again) and on delete (`delete`).
type RemoteCommand struct{}

var loggingModes = []string{"stdout", "stderr", "stdoutAndStderr", "none"}

func (c *RemoteCommand) InputKeys() []string {
	return []string{"connection", "create", "update", "delete", "stdin", "environment",
		"addPreviousOutputInEnv", "logging", "triggers"}
}
func (c *RemoteCommand) ReplaceKeys() []string { return []string{"triggers"} }
func (c *RemoteCommand) Computed() []string    { return []string{"stdout", "stderr"} }
func (c *RemoteCommand) SecretKeys() []string  { return []string{"connection"} }

func (c *RemoteCommand) Check(_ string, news Props) (Props, []Failure) {
	conn, failures := checkConnection(news["connection"])
	if conn != nil {
		news["connection"] = conn
	}
	if mode, ok := news["logging"].(string); ok && !contains(loggingModes, mode) {
		failures = append(failures, Failure{"logging", fmt.Sprintf("%q is not one of %v", mode, loggingModes)})
	}
	return news, failures
}

// Create runs `create` (if set); a failed command leaves no resource behind, so the next update
// runs it again.
func (c *RemoteCommand) Create(ctx context.Context, in Props) (string, Props, error) {
	id, err := resource.NewUniqueHex(ResourceName(ctx), 8, 0)
	if err != nil {
		return "", nil, err
	}
	outs := maps.Clone(in)
	outs["stdout"], outs["stderr"] = "", ""
	if command, set := in["create"].(string); set {
		if err := c.runInto(ctx, command, outs); err != nil {
			return "", nil, err
		}
	}
	return id, outs, nil
}

// Read returns the state as it is: a command has nothing to read back.
func (c *RemoteCommand) Read(_ context.Context, _ string, state Props) (Props, error) {
	return maps.Clone(state), nil
}

// Update runs `update`, else `create`, with the previous stdout and stderr in the environment;
// with neither the previous outputs are kept.
func (c *RemoteCommand) Update(ctx context.Context, _ string, olds, news Props) (Props, error) {
	outs := maps.Clone(news)
	outs["stdout"], outs["stderr"] = Str(olds, "stdout"), Str(olds, "stderr")
	command, set := news["update"].(string)
	if !set {
		command, set = news["create"].(string)
	}
	if set {
		if err := c.runInto(ctx, command, outs); err != nil {
			return nil, err
		}
	}
	return outs, nil
}

func (c *RemoteCommand) Delete(ctx context.Context, _ string, state Props) error {
	command, set := state["delete"].(string)
	if !set {
		return nil
	}
	return c.runInto(ctx, command, maps.Clone(state))
}

// runInto runs command with the settings in props and stores its stdout and stderr there.
func (c *RemoteCommand) runInto(ctx context.Context, command string, props Props) error {
	run, err := newCommandRun(command, props)
	if err != nil {
		return err
	}
	stdout, stderr, err := run.run(ctx)
	if err != nil {
		return err
	}
	props["stdout"], props["stderr"] = stdout, stderr
	return nil
}
