package standin

import (
	"context"
	"net/http"
	"time"
)

// serverAction posts /servers/{id}/actions/{verb} (retried while the server is locked by another
// action) and waits for the action it starts.
func (s *HcloudServer) serverAction(ctx context.Context, id, verb string, body any) error {
	var resp struct {
		Action *hcloudAction `json:"action"`
	}
	err := s.H.retryWhile(ctx, []string{"locked"}, func() error {
		return s.H.API.Do(ctx, http.MethodPost, "/servers/"+id+"/actions/"+verb, body, &resp)
	})
	if err != nil {
		return err
	}
	return s.H.WaitActions(ctx, resp.Action)
}

// shutdown asks the OS to stop (ACPI) and waits up to a minute for the server to be off, then
// powers it off hard.
func (s *HcloudServer) shutdown(ctx context.Context, id, why string) error {
	srv, err := s.get(ctx, id)
	if err != nil || srv.Status == "off" {
		return err
	}
	Logf(ctx, "hcloud: shutting server %s down %s", id, why)
	if err := s.serverAction(ctx, id, "shutdown", nil); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		srv, err := s.get(ctx, id)
		if err != nil {
			return err
		}
		if srv.Status == "off" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.H.PollInterval):
		}
	}
	Logf(ctx, "hcloud: server %s did not shut down within a minute; powering it off", id)
	return s.serverAction(ctx, id, "poweroff", nil)
}

// changeType changes the server type in place like the real provider: it powers the server off
// hard (as the real one does: a caller that cares shuts it down cleanly first), the API copies its
// disk (grown to the new type's size unless keepDisk, which keeps a later downgrade possible) and
// starts it again. A server that was running and stayed off is powered on, also when the change
// failed, so that a refused type does not leave the instance down.
func (s *HcloudServer) changeType(ctx context.Context, id, serverType string, keepDisk bool) error {
	srv, err := s.get(ctx, id)
	if err != nil {
		return err
	}
	wasRunning := srv.Status != "off"
	if wasRunning {
		Logf(ctx, "hcloud: powering server %s off to change its type to %s", id, serverType)
		if err := s.serverAction(ctx, id, "poweroff", nil); err != nil {
			return err
		}
	}
	Logf(ctx, "hcloud: changing the type of server %s from %s to %s", id, srv.ServerType.Name, serverType)
	changeErr := s.serverAction(ctx, id, "change_type", map[string]any{"server_type": serverType, "upgrade_disk": !keepDisk})
	if !wasRunning {
		return changeErr
	}
	if err := s.powerOnIfOff(ctx, id); err != nil {
		if changeErr != nil {
			Warnf(ctx, "hcloud: server %s stays off: starting it again failed: %v", id, short(err))
			return changeErr
		}
		return err
	}
	return changeErr
}

func (s *HcloudServer) powerOnIfOff(ctx context.Context, id string) error {
	srv, err := s.get(ctx, id)
	if err != nil || srv.Status != "off" {
		return err
	}
	Logf(ctx, "hcloud: starting server %s again", id)
	return s.serverAction(ctx, id, "poweron", nil)
}
