package standin

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// fakeServerAPI is one server (id 7) that powers off, changes type and powers on like the
// sandbox: change_type needs it off, refuses "cx11" (disk too small) and leaves it off.
type fakeServerAPI struct {
	mu         sync.Mutex
	status     string
	serverType string
	posts      []string
	changeBody map[string]any
}

func (f *fakeServerAPI) start(t *testing.T) *Hcloud {
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		action := map[string]any{"action": map[string]any{"id": 1, "status": "success"}}
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/servers/7":
			_ = json.NewEncoder(w).Encode(map[string]any{"server": map[string]any{
				"id": 7, "name": "alice", "status": f.status, "server_type": map[string]any{"name": f.serverType},
				"datacenter": map[string]any{"name": "fsn1-dc14", "location": map[string]any{"name": "fsn1"}},
			}})
		case r.Method == http.MethodGet:
			_ = json.NewEncoder(w).Encode(action)
		default:
			verb := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
			f.posts = append(f.posts, verb)
			switch verb {
			case "shutdown", "poweroff":
				f.status = "off"
			case "poweron":
				f.status = "running"
			case "change_type":
				_ = json.NewDecoder(r.Body).Decode(&f.changeBody)
				if f.status != "off" {
					w.WriteHeader(http.StatusConflict)
					_, _ = w.Write([]byte(`{"error": {"code": "server_not_stopped", "message": "server must be stopped"}}`))
					return
				}
				if f.changeBody["server_type"] == "cx11" {
					w.WriteHeader(http.StatusUnprocessableEntity)
					_, _ = w.Write([]byte(`{"error": {"code": "invalid_server_type", "message": "disk too small"}}`))
					return
				}
				f.serverType = f.changeBody["server_type"].(string)
			}
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(action)
		}
	}))
	t.Cleanup(server.Close)
	return &Hcloud{PollInterval: time.Millisecond, API: &API{
		Service: "hcloud", BaseURL: server.URL, Token: strings.Repeat("t", 64),
		RequestTimeout: 5 * time.Second, MaxAttempts: 1, HTTP: server.Client(),
	}}
}

func serverProps(serverType string, keepDisk bool) Props {
	return Props{"name": "alice", "serverType": serverType, "image": "ubuntu-24.04", "keepDisk": keepDisk}
}

func TestARunningServerChangesTypeInPlaceWithAPowerCycle(t *testing.T) {
	api := &fakeServerAPI{status: "running", serverType: "cx22"}
	s := &HcloudServer{H: api.start(t)}
	outs, err := s.Update(context.Background(), "7", serverProps("cx22", false), serverProps("cx32", false))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(api.posts, ","); got != "poweroff,change_type,poweron" {
		t.Fatalf("actions: %s", got)
	}
	if api.changeBody["upgrade_disk"] != true || outs["serverType"] != "cx32" || outs["status"] != "running" {
		t.Fatalf("change_type body %v, outputs %v", api.changeBody, outs)
	}
}

func TestKeepDiskChangesTypeWithoutGrowingTheDiskAndAnOffServerStaysOff(t *testing.T) {
	api := &fakeServerAPI{status: "off", serverType: "cx32"}
	s := &HcloudServer{H: api.start(t)}
	if _, err := s.Update(context.Background(), "7", serverProps("cx32", true), serverProps("cx22", true)); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(api.posts, ","); got != "change_type" || api.changeBody["upgrade_disk"] != false {
		t.Fatalf("actions %s, body %v", got, api.changeBody)
	}
}

func TestARefusedTypeFailsAndStartsTheServerAgain(t *testing.T) {
	api := &fakeServerAPI{status: "running", serverType: "cx22"}
	s := &HcloudServer{H: api.start(t)}
	_, err := s.Update(context.Background(), "7", serverProps("cx22", false), serverProps("cx11", false))
	if ErrorCode(err) != "invalid_server_type" {
		t.Fatalf("got %v", err)
	}
	if got := strings.Join(api.posts, ","); got != "poweroff,change_type,poweron" || api.status != "running" {
		t.Fatalf("actions %s, status %s", got, api.status)
	}
}

func TestAServerTypeChangeIsAnUpdateNotAReplacement(t *testing.T) {
	state := Props{"name": "a", "image": "ubuntu-24.04", "serverType": "cx22"}
	d := diff(&HcloudServer{}, state, state, Props{"name": "a", "image": "ubuntu-24.04", "serverType": "cx32"}, nil)
	if d.DetailedDiff["serverType"].GetKind() != pulumirpc.PropertyDiff_UPDATE || len(d.Replaces) != 0 {
		t.Fatalf("got %+v", d)
	}
}

// An import reads the image back as the real provider does: its name, or a snapshot's id.
func TestAnImportReadsTheImageAsItsNameOrASnapshotsID(t *testing.T) {
	s := &HcloudServer{}
	var snapshot, stock apiServer
	snapshot.Image = &struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}{ID: 300000000}
	stock.Image = &struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	}{ID: 1, Name: "ubuntu-24.04"}
	if got := s.outputs(snapshot, Props{})["image"]; got != "300000000" {
		t.Fatalf("snapshot image read as %v", got)
	}
	if got := s.outputs(stock, Props{})["image"]; got != "ubuntu-24.04" {
		t.Fatalf("stock image read as %v", got)
	}
	if got := s.outputs(stock, Props{"image": "1"})["image"]; got != "1" {
		t.Fatalf("the program's own spelling (an id) is kept: %v", got)
	}
}
