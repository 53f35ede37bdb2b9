package standin

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
)

// Hcloud holds the configured Hetzner Cloud API client shared by the hcloud resources.
type Hcloud struct {
	API          *API
	PollInterval time.Duration
	Version      string
}

// Configure reads token, endpoint and pollInterval (stack config hcloud:*), else HCLOUD_TOKEN,
// HCLOUD_ENDPOINT and HCLOUD_POLL_INTERVAL, like the real provider.
func (h *Hcloud) Configure(inputs Props) error {
	token := firstNonEmpty(Str(inputs, "token"), os.Getenv("HCLOUD_TOKEN"))
	endpoint := firstNonEmpty(Str(inputs, "endpoint"), os.Getenv("HCLOUD_ENDPOINT"), "https://api.hetzner.cloud/v1")
	poll := firstNonEmpty(Str(inputs, "pollInterval"), os.Getenv("HCLOUD_POLL_INTERVAL"), "500ms")
	if token == "" {
		return fmt.Errorf("hcloud: no API token: set the stack config hcloud:token (secret) or HCLOUD_TOKEN")
	}
	if len(token) != 64 {
		return fmt.Errorf("hcloud: the API token must be exactly 64 characters (hcloud:token or HCLOUD_TOKEN)")
	}
	interval, err := parseInterval(poll)
	if err != nil {
		return fmt.Errorf("hcloud: pollInterval %q: %v (use a duration such as 500ms)", poll, err)
	}
	h.PollInterval = interval
	h.API = &API{
		Service: "hcloud", BaseURL: strings.TrimRight(endpoint, "/"), Token: token,
		UserAgent:      "clawdet-standin-pulumi-hcloud/" + h.Version,
		RequestTimeout: 30 * time.Second, MaxAttempts: 5, HTTP: &http.Client{},
	}
	return nil
}

func parseInterval(s string) (time.Duration, error) {
	if ms, err := strconv.Atoi(s); err == nil { // a bare number: milliseconds
		return time.Duration(ms) * time.Millisecond, nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d <= 0 {
		err = fmt.Errorf("must be positive")
	}
	return d, err
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

func (h *Hcloud) ready() error {
	if h.API == nil {
		return fmt.Errorf("hcloud: the provider is not configured")
	}
	return nil
}

type hcloudAction struct {
	ID       int64  `json:"id"`
	Command  string `json:"command"`
	Status   string `json:"status"`
	Progress int    `json:"progress"`
	Error    *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// WaitActions polls each action until it succeeds; an action in error, or ctx ending, fails.
func (h *Hcloud) WaitActions(ctx context.Context, actions ...*hcloudAction) error {
	for _, a := range actions {
		if a == nil {
			continue
		}
		for a.Status == "running" {
			select {
			case <-ctx.Done():
				return fmt.Errorf("hcloud: action %d (%s) still running: %w", a.ID, a.Command, ctx.Err())
			case <-time.After(h.PollInterval):
			}
			var resp struct {
				Action hcloudAction `json:"action"`
			}
			if err := h.API.Do(ctx, http.MethodGet, fmt.Sprintf("/actions/%d", a.ID), nil, &resp); err != nil {
				return err
			}
			*a = resp.Action
		}
		if a.Status == "error" {
			msg := "unknown error"
			if a.Error != nil {
				msg = a.Error.Code + ": " + a.Error.Message
			}
			return fmt.Errorf("hcloud: action %d (%s) failed: %s", a.ID, a.Command, msg)
		}
	}
	return nil
}

// retryWhile repeats call while it fails with one of codes (e.g. "locked", "resource_in_use").
func (h *Hcloud) retryWhile(ctx context.Context, codes []string, call func() error) error {
	for {
		err := call()
		if err == nil || !contains(codes, ErrorCode(err)) {
			return err
		}
		Logf(ctx, "hcloud: %v; trying again", short(err))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-time.After(max(h.PollInterval, time.Second)):
		}
	}
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// idString formats an API id for the engine ("123").
func idString(id int64) string { return strconv.FormatInt(id, 10) }

func parseID(kind, id string) (int64, error) {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("hcloud: %s id %q is not a number", kind, id)
	}
	return n, nil
}
