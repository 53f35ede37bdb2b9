package standin

import (
	"context"
	"fmt"
)

type loggerKey struct{}

// Logger reports a line to the engine; persistent lines stay in the update's diagnostics.
type Logger func(msg string, persistent bool)

// WithLogger returns ctx carrying the logger of the current resource operation.
func WithLogger(ctx context.Context, log Logger) context.Context {
	return context.WithValue(ctx, loggerKey{}, log)
}

// Logf reports progress (a status line; never pass secrets).
func Logf(ctx context.Context, format string, args ...any) { logf(ctx, false, format, args...) }

// Warnf reports something an operator may want to see later, such as a retried API call.
func Warnf(ctx context.Context, format string, args ...any) { logf(ctx, true, format, args...) }

func logf(ctx context.Context, persistent bool, format string, args ...any) {
	if log, ok := ctx.Value(loggerKey{}).(Logger); ok {
		log(fmt.Sprintf(format, args...), persistent)
	}
}
