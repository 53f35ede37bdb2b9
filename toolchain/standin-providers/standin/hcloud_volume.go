package standin

import (
	"context"
	"fmt"
	"net/http"
	"time"
)

// HcloudVolume is hcloud:index/volume:Volume: a block volume in a location, formatted at
// creation; name, labels and deleteProtection change in place, size only grows (resize action).
type HcloudVolume struct{ H *Hcloud }

func (v *HcloudVolume) InputKeys() []string {
	return []string{"name", "size", "location", "format", "labels", "deleteProtection", "automount", "serverId"}
}
func (v *HcloudVolume) ReplaceKeys() []string { return []string{"location", "format"} }
func (v *HcloudVolume) Computed() []string    { return []string{"linuxDevice", "location", "serverId"} }

func (v *HcloudVolume) Check(urnName string, news Props) (Props, []Failure) {
	var failures []Failure
	if _, set := news["name"]; !set {
		news["name"] = autoName(urnName)
	}
	if size, ok := Num(news, "size"); !ok && !IsUnknown(news["size"]) {
		failures = append(failures, Failure{"size", "missing required property \"size\""})
	} else if ok && (size < 10 || size > 10240) {
		failures = append(failures, Failure{"size", fmt.Sprintf("%v GB is outside 10-10240", size)})
	}
	if f := Str(news, "format"); f != "" && f != "ext4" && f != "xfs" {
		failures = append(failures, Failure{"format", fmt.Sprintf("%q is not ext4 or xfs", f)})
	}
	_, hasServer := news["serverId"]
	if Str(news, "location") == "" && !IsUnknown(news["location"]) && !hasServer {
		failures = append(failures, Failure{"location", "one of location or serverId is required"})
	}
	return news, failures
}

type apiVolume struct {
	ID          int64             `json:"id"`
	Name        string            `json:"name"`
	Server      *int64            `json:"server"`
	Size        int64             `json:"size"`
	Format      *string           `json:"format"`
	Labels      map[string]string `json:"labels"`
	LinuxDevice string            `json:"linux_device"`
	Location    struct {
		Name string `json:"name"`
	} `json:"location"`
	Protection struct {
		Delete bool `json:"delete"`
	} `json:"protection"`
}

func (v *HcloudVolume) outputs(vol apiVolume, previous Props) Props {
	out := Props{
		"name": vol.Name, "size": float64(vol.Size), "location": vol.Location.Name,
		"labels": AnyMap(vol.Labels), "linuxDevice": vol.LinuxDevice, "deleteProtection": vol.Protection.Delete,
	}
	if vol.Format != nil {
		out["format"] = *vol.Format
	} else if f := Str(previous, "format"); f != "" {
		out["format"] = f // the API forgets the format of a volume once it is in use
	}
	if vol.Server != nil {
		out["serverId"] = float64(*vol.Server)
	}
	if a, ok := previous["automount"]; ok {
		out["automount"] = a
	}
	return out
}

func (v *HcloudVolume) get(ctx context.Context, id string) (*apiVolume, error) {
	n, err := parseID("volume", id)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Volume apiVolume `json:"volume"`
	}
	if err := v.H.API.Do(ctx, http.MethodGet, fmt.Sprintf("/volumes/%d", n), nil, &resp); err != nil {
		return nil, err
	}
	return &resp.Volume, nil
}

func (v *HcloudVolume) Create(ctx context.Context, in Props) (string, Props, error) {
	if err := v.H.ready(); err != nil {
		return "", nil, err
	}
	size, _ := Num(in, "size")
	body := map[string]any{"name": Str(in, "name"), "size": int64(size), "labels": StringMap(in, "labels")}
	if f := Str(in, "format"); f != "" {
		body["format"] = f
	}
	if loc := Str(in, "location"); loc != "" {
		body["location"] = loc
	}
	if server, ok := Num(in, "serverId"); ok {
		body["server"] = int64(server)
		body["automount"] = Bool(in, "automount", false)
	}
	var resp struct {
		Volume      apiVolume       `json:"volume"`
		Action      *hcloudAction   `json:"action"`
		NextActions []*hcloudAction `json:"next_actions"`
	}
	if err := v.H.API.Do(ctx, http.MethodPost, "/volumes", body, &resp); err != nil {
		return "", nil, err
	}
	id := idString(resp.Volume.ID)
	Logf(ctx, "hcloud: created volume %s (%s, %d GB)", id, resp.Volume.Name, resp.Volume.Size)
	if err := v.H.WaitActions(ctx, append([]*hcloudAction{resp.Action}, resp.NextActions...)...); err != nil {
		return id, v.outputs(resp.Volume, in), err
	}
	if Bool(in, "deleteProtection", false) {
		if err := v.action(ctx, id, "change_protection", map[string]any{"delete": true}); err != nil {
			return id, v.outputs(resp.Volume, in), err
		}
	}
	vol, err := v.get(ctx, id)
	if err != nil {
		return id, v.outputs(resp.Volume, in), err
	}
	return id, v.outputs(*vol, in), nil
}

func (v *HcloudVolume) Read(ctx context.Context, id string, state Props) (Props, error) {
	if err := v.H.ready(); err != nil {
		return nil, err
	}
	vol, err := v.get(ctx, id)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return v.outputs(*vol, state), nil
}

func (v *HcloudVolume) action(ctx context.Context, id, verb string, body map[string]any) error {
	var resp struct {
		Action *hcloudAction `json:"action"`
	}
	err := v.H.retryWhile(ctx, []string{"locked"}, func() error {
		return v.H.API.Do(ctx, http.MethodPost, "/volumes/"+id+"/actions/"+verb, body, &resp)
	})
	if err != nil {
		return err
	}
	return v.H.WaitActions(ctx, resp.Action)
}

func (v *HcloudVolume) Update(ctx context.Context, id string, olds, news Props) (Props, error) {
	if err := v.H.ready(); err != nil {
		return nil, err
	}
	if Str(olds, "name") != Str(news, "name") || !Equal(olds["labels"], news["labels"]) {
		body := map[string]any{"name": Str(news, "name"), "labels": StringMap(news, "labels")}
		if err := v.H.API.Do(ctx, http.MethodPut, "/volumes/"+id, body, nil); err != nil {
			return nil, err
		}
	}
	oldSize, _ := Num(olds, "size")
	newSize, _ := Num(news, "size")
	if newSize < oldSize {
		return nil, fmt.Errorf("hcloud: a volume only grows: size %v GB is smaller than %v GB", newSize, oldSize)
	}
	if newSize > oldSize {
		if err := v.action(ctx, id, "resize", map[string]any{"size": int64(newSize)}); err != nil {
			return nil, err
		}
	}
	if Bool(olds, "deleteProtection", false) != Bool(news, "deleteProtection", false) {
		body := map[string]any{"delete": Bool(news, "deleteProtection", false)}
		if err := v.action(ctx, id, "change_protection", body); err != nil {
			return nil, err
		}
	}
	// olds are the old outputs: they carry serverId once a VolumeAttachment attached the volume.
	if _, set := news["serverId"]; set && !Equal(olds["serverId"], news["serverId"]) {
		return nil, fmt.Errorf("hcloud: the offline stand-in provider attaches volumes with a " +
			"VolumeAttachment resource, not by changing serverId; use the real plugin for that")
	}
	vol, err := v.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return v.outputs(*vol, news), nil
}

func (v *HcloudVolume) Delete(ctx context.Context, id string, _ Props) error {
	if err := v.H.ready(); err != nil {
		return err
	}
	// A server deleted a moment ago may still hold the volume (its detach action is running).
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	vol, err := v.get(ctx, id)
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if vol.Server != nil {
		if err := v.action(ctx, id, "detach", map[string]any{}); err != nil && !IsNotFound(err) {
			return err
		}
	}
	err = v.H.retryWhile(ctx, []string{"locked"}, func() error {
		return v.H.API.Do(ctx, http.MethodDelete, "/volumes/"+id, nil, nil)
	})
	if IsNotFound(err) {
		return nil
	}
	return err
}

// HcloudVolumeAttachment is hcloud:index/volumeAttachment:VolumeAttachment: the volume attached
// to a server (its id is the volume's id, as with the real provider); any change replaces it.
type HcloudVolumeAttachment struct{ H *Hcloud }

func (a *HcloudVolumeAttachment) InputKeys() []string {
	return []string{"serverId", "volumeId", "automount"}
}
func (a *HcloudVolumeAttachment) ReplaceKeys() []string {
	return []string{"serverId", "volumeId", "automount"}
}
func (a *HcloudVolumeAttachment) Computed() []string { return nil }

func (a *HcloudVolumeAttachment) Check(_ string, news Props) (Props, []Failure) {
	var failures []Failure
	for _, k := range []string{"serverId", "volumeId"} {
		if _, ok := Num(news, k); !ok && !IsUnknown(news[k]) {
			failures = append(failures, Failure{k, fmt.Sprintf("missing required property %q", k)})
		}
	}
	return news, failures
}

func (a *HcloudVolumeAttachment) volumes() *HcloudVolume { return &HcloudVolume{H: a.H} }

func (a *HcloudVolumeAttachment) Create(ctx context.Context, in Props) (string, Props, error) {
	if err := a.H.ready(); err != nil {
		return "", nil, err
	}
	server, _ := Num(in, "serverId")
	volume, _ := Num(in, "volumeId")
	id := idString(int64(volume))
	outs := Props{"serverId": server, "volumeId": volume, "automount": Bool(in, "automount", false)}
	// An operation that died after attaching (its state lost the attachment) left it in place:
	// adopt it rather than fail with volume_already_attached.
	if vol, err := a.volumes().get(ctx, id); err == nil && vol.Server != nil && *vol.Server == int64(server) {
		Logf(ctx, "hcloud: volume %s is already attached to server %d; adopting the attachment", id, int64(server))
		return id, outs, nil
	}
	body := map[string]any{"server": int64(server), "automount": Bool(in, "automount", false)}
	if err := a.volumes().action(ctx, id, "attach", body); err != nil {
		return "", nil, err
	}
	Logf(ctx, "hcloud: attached volume %s to server %d", id, int64(server))
	return id, outs, nil
}

func (a *HcloudVolumeAttachment) Read(ctx context.Context, id string, state Props) (Props, error) {
	if err := a.H.ready(); err != nil {
		return nil, err
	}
	vol, err := a.volumes().get(ctx, id)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if vol.Server == nil {
		return nil, nil // detached behind our back: the attachment is gone
	}
	return Props{"serverId": float64(*vol.Server), "volumeId": float64(vol.ID), "automount": state["automount"]}, nil
}

func (a *HcloudVolumeAttachment) Update(_ context.Context, _ string, _, _ Props) (Props, error) {
	return nil, fmt.Errorf("hcloud: a volume attachment is replaced, never updated")
}

func (a *HcloudVolumeAttachment) Delete(ctx context.Context, id string, state Props) error {
	if err := a.H.ready(); err != nil {
		return err
	}
	vol, err := a.volumes().get(ctx, id)
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	server, _ := Num(state, "serverId")
	if vol.Server == nil || *vol.Server != int64(server) {
		return nil // already detached (its server was deleted), or attached elsewhere since
	}
	err = a.volumes().action(ctx, id, "detach", map[string]any{})
	if ErrorCode(err) == "invalid_input" {
		return nil // detached meanwhile
	}
	return err
}
