package standin

import (
	"context"
	"fmt"
	"maps"

	"github.com/pkg/sftp"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// CopyToRemote is command:remote:CopyToRemote: copies a text asset, a file (FileAsset) or a file
// or directory (FileArchive) to remotePath over SFTP. Like the real v1.2.1 it refuses asset
// archives and remote (URI) sources in Check, and leaves the copy in place on delete.
type CopyToRemote struct{}

func (c *CopyToRemote) InputKeys() []string {
	return []string{"connection", "source", "remotePath", "triggers"}
}
func (c *CopyToRemote) ReplaceKeys() []string { return []string{"triggers"} }
func (c *CopyToRemote) Computed() []string    { return nil }
func (c *CopyToRemote) SecretKeys() []string  { return []string{"connection"} }

// Check reports the real v1.2.1 failures, including "either asset or archive must be set" for a
// source not known yet (a preview): that release cannot preview a source computed from outputs.
func (c *CopyToRemote) Check(_ string, news Props) (Props, []Failure) {
	conn, failures := checkConnection(news["connection"])
	if conn != nil {
		news["connection"] = conn
	}
	if path, ok := news["remotePath"].(string); (!ok || path == "") && !IsUnknown(news["remotePath"]) {
		failures = append(failures, Failure{"remotePath", `missing required property "remotePath"`})
	}
	switch source := news["source"].(type) {
	case *resource.Asset:
		if !source.IsPath() && !source.IsText() {
			failures = append(failures, Failure{"asset", "asset must be a path-based file asset or a text asset"})
		}
	case *resource.Archive:
		if !source.IsPath() {
			failures = append(failures, Failure{"archive", "archive must be a path to a file or directory"})
		}
	default:
		failures = append(failures, Failure{"asset", "either asset or archive must be set"})
	}
	return news, failures
}

func (c *CopyToRemote) Create(ctx context.Context, in Props) (string, Props, error) {
	if err := copyToRemote(ctx, in); err != nil {
		return "", nil, err
	}
	id, err := resource.NewUniqueHex("", 8, 0)
	return id, maps.Clone(in), err
}

func (c *CopyToRemote) Read(_ context.Context, _ string, state Props) (Props, error) {
	return maps.Clone(state), nil
}

// Update copies again only when the source's contents or remotePath changed: a new connection
// (another host) alone copies nothing, as in the real provider.
func (c *CopyToRemote) Update(ctx context.Context, _ string, olds, news Props) (Props, error) {
	if sourceHash(news["source"]) != sourceHash(olds["source"]) || Str(news, "remotePath") != Str(olds, "remotePath") {
		if err := copyToRemote(ctx, news); err != nil {
			return nil, err
		}
	}
	return maps.Clone(news), nil
}

func (c *CopyToRemote) Delete(context.Context, string, Props) error { return nil }

func sourceHash(v any) string {
	switch source := byPointer(v).(type) {
	case *resource.Asset:
		if source.EnsureHash() == nil {
			return source.Hash
		}
	case *resource.Archive:
		if source.EnsureHash() == nil {
			return source.Hash
		}
	}
	return ""
}

func copyToRemote(ctx context.Context, in Props) error {
	conn, err := parseConnection(in["connection"])
	if err != nil {
		return err
	}
	remotePath := Str(in, "remotePath")
	client, err := conn.dial(ctx)
	if err != nil {
		return err
	}
	defer client.Close()
	stop := context.AfterFunc(ctx, func() { _ = client.Close() })
	defer stop()
	// One ReadFrom per file, so concurrent writes cannot leave a file longer than written.
	files, err := sftp.NewClient(client, sftp.UseConcurrentWrites(true))
	if err != nil {
		return err
	}
	defer files.Close()
	switch source := byPointer(in["source"]).(type) {
	case *resource.Asset:
		Logf(ctx, "copying %s to %s:%s", describeAsset(source), conn.host, remotePath)
		if source.IsText() {
			return copyText(files, source.Text, remotePath)
		}
		return copyPath(files, source.Path, remotePath)
	case *resource.Archive:
		Logf(ctx, "copying %s to %s:%s", source.Path, conn.host, remotePath)
		return copyPath(files, source.Path, remotePath)
	}
	return fmt.Errorf("source is neither an asset nor an archive")
}

func describeAsset(a *resource.Asset) string {
	if a.IsText() {
		return "a text asset"
	}
	return a.Path
}
