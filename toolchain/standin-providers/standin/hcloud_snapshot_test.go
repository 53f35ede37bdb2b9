package standin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// fakeImageAPI answers create_image, the action, and GET/PUT/DELETE of image 300 (made from
// server 42), recording calls and bodies. The image is returned so a test can change what GET
// answers (created_from null: the API no longer names the server).
func fakeImageAPI(t *testing.T, calls *[]string, bodies *[]map[string]any) (*Hcloud, map[string]any) {
	image := map[string]any{
		"id": 300, "type": "snapshot", "status": "available", "description": "golden",
		"labels": map[string]string{"clawdet-golden": "2026.9.6"}, "created_from": map[string]any{"id": 42, "name": "b"},
	}
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*calls = append(*calls, r.Method+" "+r.URL.Path)
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		*bodies = append(*bodies, body)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/actions/create_image"):
			w.WriteHeader(http.StatusCreated)
			creating := map[string]any{}
			for k, v := range image {
				creating[k] = v
			}
			creating["status"] = "creating"
			json.NewEncoder(w).Encode(map[string]any{"image": creating,
				"action": map[string]any{"id": 9, "command": "create_image", "status": "running"}})
		case strings.HasPrefix(r.URL.Path, "/actions/"):
			json.NewEncoder(w).Encode(map[string]any{"action": map[string]any{"id": 9, "status": "success"}})
		case r.Method == http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			json.NewEncoder(w).Encode(map[string]any{"image": image})
		}
	}))
	t.Cleanup(server.Close)
	return &Hcloud{PollInterval: time.Millisecond, API: &API{
		Service: "hcloud", BaseURL: server.URL, Token: strings.Repeat("t", 64),
		RequestTimeout: 5 * time.Second, MaxAttempts: 1, HTTP: server.Client(),
	}}, image
}

func TestASnapshotIsAServersCreateImageAndOutlivesIt(t *testing.T) {
	var calls []string
	var bodies []map[string]any
	api, image := fakeImageAPI(t, &calls, &bodies)
	s := &HcloudSnapshot{H: api}
	in := Props{"serverId": 42.0, "description": "golden", "labels": map[string]any{"clawdet-golden": "2026.9.6"}}
	id, outs, err := s.Create(context.Background(), in)
	if err != nil || id != "300" {
		t.Fatalf("create: id %q, %v", id, err)
	}
	if calls[0] != "POST /servers/42/actions/create_image" || bodies[0]["type"] != "snapshot" ||
		bodies[0]["description"] != "golden" {
		t.Fatalf("create_image call: %v %v", calls, bodies[0])
	}
	if outs["serverId"] != 42.0 || outs["description"] != "golden" {
		t.Fatalf("outputs: %v", outs)
	}
	read, err := s.Read(context.Background(), "300", Props{"serverId": 7.0})
	if err != nil || read["serverId"] != 42.0 {
		t.Fatalf("read: created_from names the server: %v, %v", read, err)
	}
	image["created_from"] = nil
	read, err = s.Read(context.Background(), "300", Props{"serverId": 42.0})
	if err != nil || read["serverId"] != 42.0 {
		t.Fatalf("read after the server went: the state's serverId stays: %v, %v", read, err)
	}
	read, err = s.Read(context.Background(), "300", Props{})
	if _, ok := read["serverId"]; err != nil || ok {
		t.Fatalf("read with no server anywhere: %v, %v", read, err)
	}
	if !contains(s.ReplaceKeys(), "serverId") || contains(s.ReplaceKeys(), "labels") {
		t.Fatalf("another server replaces a snapshot, labels change in place: %v", s.ReplaceKeys())
	}
	if err := s.Delete(context.Background(), "300", nil); err != nil {
		t.Fatalf("delete: %v", err)
	}
	if calls[len(calls)-1] != "DELETE /images/300" {
		t.Fatalf("delete call: %v", calls)
	}
}

func TestASnapshotNeedsItsServer(t *testing.T) {
	_, failures := (&HcloudSnapshot{}).Check("golden", Props{"description": "x"})
	if len(failures) != 1 || failures[0].Property != "serverId" {
		t.Fatalf("failures: %v", failures)
	}
}
