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

// fakeVolumeAPI answers the few volume calls Update makes, recording them.
func fakeVolumeAPI(t *testing.T, calls *[]string) *Hcloud {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		*calls = append(*calls, r.Method+" "+r.URL.Path)
		w.Header().Set("Content-Type", "application/json")
		if strings.Contains(r.URL.Path, "/actions/") {
			json.NewEncoder(w).Encode(map[string]any{"action": map[string]any{"id": 1, "status": "success"}})
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"volume": map[string]any{
			"id": 7, "name": "alice-data", "size": 20, "server": 1001, "format": "ext4",
			"labels": map[string]string{"tier": "pro"}, "linux_device": "/dev/disk/by-id/scsi-0HC_Volume_7",
			"location": map[string]any{"name": "hel1"}, "protection": map[string]any{"delete": false},
		}})
	}))
	t.Cleanup(server.Close)
	return &Hcloud{PollInterval: time.Millisecond, API: &API{
		Service: "hcloud", BaseURL: server.URL, Token: strings.Repeat("t", 64),
		RequestTimeout: 5 * time.Second, MaxAttempts: 1, HTTP: server.Client(),
	}}
}

func TestAnAttachedVolumeChangesLabelsAndGrowsInPlace(t *testing.T) {
	var calls []string
	v := &HcloudVolume{H: fakeVolumeAPI(t, &calls)}
	// The old outputs carry serverId (the attachment attached it); the program never sets it.
	olds := Props{"name": "alice-data", "size": 10.0, "location": "hel1", "labels": map[string]any{"tier": "free"},
		"serverId": 1001.0, "format": "ext4"}
	news := Props{"name": "alice-data", "size": 20.0, "location": "hel1", "labels": map[string]any{"tier": "pro"},
		"format": "ext4"}
	outs, err := v.Update(context.Background(), "7", olds, news)
	if err != nil {
		t.Fatalf("update of an attached volume: %v", err)
	}
	if outs["size"] != 20.0 {
		t.Fatalf("size after resize: %v", outs["size"])
	}
	want := []string{"PUT /volumes/7", "POST /volumes/7/actions/resize"}
	for _, w := range want {
		found := false
		for _, c := range calls {
			found = found || c == w
		}
		if !found {
			t.Fatalf("expected call %q among %v", w, calls)
		}
	}
}

func TestAVolumeNeverShrinks(t *testing.T) {
	var calls []string
	v := &HcloudVolume{H: fakeVolumeAPI(t, &calls)}
	_, err := v.Update(context.Background(), "7", Props{"size": 20.0}, Props{"size": 10.0})
	if err == nil || !strings.Contains(err.Error(), "only grows") {
		t.Fatalf("shrinking must fail clearly, got %v", err)
	}
}

func TestAnAttachmentALostOperationLeftIsAdopted(t *testing.T) {
	var calls []string
	a := &HcloudVolumeAttachment{H: fakeVolumeAPI(t, &calls)}
	id, _, err := a.Create(context.Background(), Props{"serverId": 1001.0, "volumeId": 7.0})
	if err != nil || id != "7" {
		t.Fatalf("adopting an existing attachment: id %q, %v", id, err)
	}
	for _, c := range calls {
		if strings.Contains(c, "/actions/attach") {
			t.Fatalf("attached again: %v", calls)
		}
	}
}
