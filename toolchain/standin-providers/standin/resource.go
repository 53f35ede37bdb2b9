package standin

import "context"

// Failure is one invalid input, reported by Check.
type Failure struct {
	Property string
	Reason   string
}

// Resource implements one resource type of a stand-in provider. All values are plain (see Props).
type Resource interface {
	// Check validates the inputs (values may be Unknown during a preview) and may fill defaults;
	// urnName is the resource's logical name (for auto-naming).
	Check(urnName string, news Props) (Props, []Failure)
	// InputKeys are the input properties Diff compares and Read reports as inputs.
	InputKeys() []string
	// ReplaceKeys are the inputs whose change replaces the resource.
	ReplaceKeys() []string
	// Computed lists the outputs that are unknown until the resource exists (for previews).
	Computed() []string
	Create(ctx context.Context, inputs Props) (id string, outputs Props, err error)
	// Read returns the live outputs; nil outputs and no error mean the resource is gone.
	Read(ctx context.Context, id string, state Props) (Props, error)
	Update(ctx context.Context, id string, olds, news Props) (Props, error)
	Delete(ctx context.Context, id string, state Props) error
}

// Config configures a provider from its resolved settings (stack config merged with env).
type Config interface {
	// Configure receives the provider inputs (camelCase keys) and returns an error for bad settings.
	Configure(inputs Props) error
}

// AlwaysSecret is implemented by resources whose schema marks some outputs secret whatever the
// program passed (e.g. a connection carrying a private key).
type AlwaysSecret interface {
	SecretKeys() []string
}

type resourceNameKey struct{}

// withResourceName returns ctx carrying the logical name of the resource being created.
func withResourceName(ctx context.Context, name string) context.Context {
	return context.WithValue(ctx, resourceNameKey{}, name)
}

// ResourceName is the logical name (from the URN) of the resource being created, or "".
func ResourceName(ctx context.Context) string {
	name, _ := ctx.Value(resourceNameKey{}).(string)
	return name
}
