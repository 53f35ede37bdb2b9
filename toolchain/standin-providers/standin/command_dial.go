package standin

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/util/retry"
	"golang.org/x/crypto/ssh"
)

// dial connects and authenticates, retrying like the real provider: after each failure it reports
// "Dial N/LIMIT failed: retrying" and waits (100 ms, growing 1.5x up to 5 s); once more than
// dialErrorLimit dials failed (-1: never) it gives up with "after N failed attempts: <error>".
func (c sshConnection) dial(ctx context.Context) (*ssh.Client, error) {
	config, err := c.clientConfig()
	if err != nil {
		return nil, err
	}
	return dialWithRetry(ctx, "Dial", c.dialErrorLimit, func() (*ssh.Client, error) {
		return dialOnce(ctx, c.endpoint(), config, c.perDialTimeout)
	})
}

func dialWithRetry[T any](ctx context.Context, what string, limit int, dial func() (T, error)) (T, error) {
	var zero T
	var lastErr error
	ok, result, err := retry.Until(ctx, retry.Acceptor{
		Accept: func(try int, _ time.Duration) (bool, any, error) {
			conn, err := dial()
			if err == nil {
				return true, conn, nil
			}
			lastErr = err
			dials := try + 1
			if limit != unlimitedDials && dials > limit {
				return true, nil, fmt.Errorf("after %d failed attempts: %w", try, err)
			}
			shown := "inf"
			if limit != unlimitedDials {
				shown = fmt.Sprint(limit)
			}
			Logf(ctx, "%s %d/%s failed: retrying", what, dials, shown)
			return false, nil, nil
		},
	})
	if ok && err == nil {
		return result.(T), nil
	}
	if err == nil { // retry.Until stops without an error when ctx ends
		err = fmt.Errorf("%w (last dial error: %v)", ctx.Err(), lastErr)
	}
	return zero, err
}

// dialOnce bounds the TCP connect and the SSH handshake by the per-dial timeout (0: none) and by
// ctx, so that a host that accepts connections but never answers cannot hang the update.
func dialOnce(ctx context.Context, endpoint string, config *ssh.ClientConfig, timeout time.Duration) (*ssh.Client, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", endpoint)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	sshConn, channels, requests, err := ssh.NewClientConn(conn, endpoint, config)
	if !stop() {
		err = fmt.Errorf("ssh: handshake with %s: %w", endpoint, ctx.Err())
	}
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return ssh.NewClient(sshConn, channels, requests), nil
}
