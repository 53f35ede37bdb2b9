package standin

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestRetriesHonourRetryAfterAndStopAtTheLimit(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) <= 2 {
			w.Header().Set("Retry-After", "0")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = w.Write([]byte(`{"error": {"code": "rate_limit_exceeded", "message": "slow down"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"server": {"id": 7}}`))
	}))
	defer srv.Close()
	api := &API{Service: "hcloud", BaseURL: srv.URL, Token: "t", MaxAttempts: 5, RequestTimeout: time.Second}
	var out struct {
		Server struct {
			ID int64 `json:"id"`
		} `json:"server"`
	}
	if err := api.Do(context.Background(), http.MethodPost, "/servers", map[string]any{}, &out); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || out.Server.ID != 7 {
		t.Fatalf("calls=%d id=%d", calls.Load(), out.Server.ID)
	}
}

func TestPostIsNotRetriedOn500ButGetIs(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte(`{"success": false, "errors": [{"code": 10000, "message": "boom"}]}`))
	}))
	defer srv.Close()
	api := &API{Service: "cloudflare", BaseURL: srv.URL, Token: "t", MaxAttempts: 3, RequestTimeout: time.Second}
	err := api.Do(context.Background(), http.MethodPost, "/x", map[string]any{}, nil)
	if err == nil || calls.Load() != 1 || ErrorCode(err) != "10000" {
		t.Fatalf("POST: err=%v calls=%d", err, calls.Load())
	}
	calls.Store(0)
	start := time.Now()
	err = api.Do(context.Background(), http.MethodGet, "/x", nil, nil)
	if err == nil || calls.Load() != 3 {
		t.Fatalf("GET: err=%v calls=%d", err, calls.Load())
	}
	if time.Since(start) > 10*time.Second {
		t.Fatalf("backoff too long: %s", time.Since(start))
	}
}

func TestNotFoundIsRecognised(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error": {"code": "not_found", "message": "server with ID '1' not found"}}`))
	}))
	defer srv.Close()
	api := &API{Service: "hcloud", BaseURL: srv.URL, Token: "t"}
	err := api.Do(context.Background(), http.MethodGet, "/servers/1", nil, nil)
	if !IsNotFound(err) || ErrorCode(err) != "not_found" {
		t.Fatalf("got %v", err)
	}
}
