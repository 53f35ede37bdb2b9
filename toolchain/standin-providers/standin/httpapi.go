package standin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// API is a small JSON-over-HTTP client: every request has a timeout, and 429 / 5xx answers and
// transport errors are retried a bounded number of times with backoff, honouring Retry-After.
// POST (not idempotent) is retried only on 429 and 503, which mean the request was not processed.
type API struct {
	Service        string // "hcloud" or "cloudflare", for messages
	BaseURL        string // without a trailing slash
	Token          string // sent as a bearer token; never logged
	UserAgent      string
	RequestTimeout time.Duration // per attempt
	MaxAttempts    int
	HTTP           *http.Client
}

// APIError is a non-2xx answer.
type APIError struct {
	Service string
	Method  string
	Path    string
	Status  int
	Code    string // hcloud: "not_found", "resource_in_use"...; cloudflare: the numeric code
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("%s API %s %s: HTTP %d %s: %s", e.Service, e.Method, e.Path, e.Status, e.Code, e.Message)
}

// IsNotFound reports whether err is a 404 answer.
func IsNotFound(err error) bool {
	var apiErr *APIError
	return errors.As(err, &apiErr) && apiErr.Status == http.StatusNotFound
}

// ErrorCode returns the API error code of err ("" when err is not an API error).
func ErrorCode(err error) string {
	var apiErr *APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code
	}
	return ""
}

// Do sends body (JSON, when not nil) and decodes a 2xx answer into out (when not nil).
func (a *API) Do(ctx context.Context, method, path string, body, out any) error {
	var payload []byte
	if body != nil {
		var err error
		if payload, err = json.Marshal(body); err != nil {
			return err
		}
	}
	attempts := a.MaxAttempts
	if attempts <= 0 {
		attempts = 5
	}
	var lastErr error
	for attempt := 1; ; attempt++ {
		status, header, data, err := a.once(ctx, method, path, payload)
		if err == nil && status >= 200 && status < 300 {
			if out != nil && len(data) > 0 {
				if err := json.Unmarshal(data, out); err != nil {
					return fmt.Errorf("%s API %s %s: decoding the answer: %w", a.Service, method, path, err)
				}
			}
			return nil
		}
		if err == nil {
			err = a.apiError(method, path, status, data)
		}
		lastErr = err
		if attempt >= attempts || !retryable(method, status, err) || ctx.Err() != nil {
			if attempt > 1 {
				return fmt.Errorf("%w (after %d attempts)", lastErr, attempt)
			}
			return lastErr
		}
		wait := backoff(attempt, header)
		Warnf(ctx, "%s API %s %s: %v; retry %d/%d in %s", a.Service, method, path, short(err), attempt, attempts-1, wait)
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (cancelled while retrying: %v)", lastErr, ctx.Err())
		case <-time.After(wait):
		}
	}
}

func (a *API) once(ctx context.Context, method, path string, payload []byte) (int, http.Header, []byte, error) {
	timeout := a.RequestTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var reader io.Reader
	if payload != nil {
		reader = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.BaseURL+path, reader)
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.Token)
	req.Header.Set("Accept", "application/json")
	if a.UserAgent != "" {
		req.Header.Set("User-Agent", a.UserAgent)
	}
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := a.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return 0, nil, nil, err
	}
	return resp.StatusCode, resp.Header, data, nil
}

// apiError reads either error envelope: hcloud {"error": {code, message}} or cloudflare
// {"errors": [{code, message}]}.
func (a *API) apiError(method, path string, status int, data []byte) *APIError {
	e := &APIError{Service: a.Service, Method: method, Path: path, Status: status}
	var envelope struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		Errors []struct {
			Code    json.Number `json:"code"`
			Message string      `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(data, &envelope) == nil {
		switch {
		case envelope.Error != nil:
			e.Code, e.Message = envelope.Error.Code, envelope.Error.Message
		case len(envelope.Errors) > 0:
			e.Code, e.Message = envelope.Errors[0].Code.String(), envelope.Errors[0].Message
			for _, more := range envelope.Errors[1:] {
				e.Message += "; " + more.Message
			}
		}
	}
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(data))
		if len(e.Message) > 300 {
			e.Message = e.Message[:300] + "..."
		}
	}
	return e
}

func retryable(method string, status int, err error) bool {
	if status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable {
		return true
	}
	idempotent := method != http.MethodPost
	if status == 0 { // transport error or timeout
		return idempotent
	}
	return status >= 500 && idempotent
}

func backoff(attempt int, header http.Header) time.Duration {
	if header != nil {
		if v := header.Get("Retry-After"); v != "" {
			if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
				return min(time.Duration(secs)*time.Second, 60*time.Second)
			}
			if at, err := http.ParseTime(v); err == nil {
				return min(max(time.Until(at), 0), 60*time.Second)
			}
		}
	}
	base := 500 * time.Millisecond << (attempt - 1)
	base = min(base, 10*time.Second)
	return base/2 + time.Duration(rand.Int64N(int64(base/2)+1))
}

func short(err error) string {
	s := err.Error()
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
