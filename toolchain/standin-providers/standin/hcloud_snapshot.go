package standin

import (
	"context"
	"fmt"
	"net/http"
)

// HcloudSnapshot is hcloud:index/snapshot:Snapshot: an image of a server's disk
// (`POST /servers/{id}/actions/create_image` with type "snapshot"); description and labels
// change in place (`PUT /images/{id}`), another serverId replaces it. The snapshot outlives its
// server: Read keeps serverId from the image's created_from.
type HcloudSnapshot struct{ H *Hcloud }

func (s *HcloudSnapshot) InputKeys() []string   { return []string{"serverId", "description", "labels"} }
func (s *HcloudSnapshot) ReplaceKeys() []string { return []string{"serverId"} }
func (s *HcloudSnapshot) Computed() []string    { return []string{"description"} }

func (s *HcloudSnapshot) Check(_ string, news Props) (Props, []Failure) {
	if _, ok := Num(news, "serverId"); !ok && !IsUnknown(news["serverId"]) {
		return news, []Failure{{"serverId", "missing required property \"serverId\""}}
	}
	return news, nil
}

type apiImage struct {
	ID          int64             `json:"id"`
	Type        string            `json:"type"`
	Status      string            `json:"status"`
	Description string            `json:"description"`
	Labels      map[string]string `json:"labels"`
	CreatedFrom *struct {
		ID int64 `json:"id"`
	} `json:"created_from"`
}

func (s *HcloudSnapshot) outputs(img apiImage, previous Props) Props {
	out := Props{"description": img.Description, "labels": AnyMap(img.Labels)}
	if img.CreatedFrom != nil {
		out["serverId"] = float64(img.CreatedFrom.ID)
	} else if id, ok := Num(previous, "serverId"); ok {
		out["serverId"] = id
	}
	return out
}

func (s *HcloudSnapshot) get(ctx context.Context, id string) (*apiImage, error) {
	n, err := parseID("image", id)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Image apiImage `json:"image"`
	}
	if err := s.H.API.Do(ctx, http.MethodGet, fmt.Sprintf("/images/%d", n), nil, &resp); err != nil {
		return nil, err
	}
	return &resp.Image, nil
}

func (s *HcloudSnapshot) Create(ctx context.Context, in Props) (string, Props, error) {
	if err := s.H.ready(); err != nil {
		return "", nil, err
	}
	server, _ := Num(in, "serverId")
	body := map[string]any{"type": "snapshot", "labels": StringMap(in, "labels")}
	if d := Str(in, "description"); d != "" {
		body["description"] = d
	}
	var resp struct {
		Image  apiImage      `json:"image"`
		Action *hcloudAction `json:"action"`
	}
	path := fmt.Sprintf("/servers/%d/actions/create_image", int64(server))
	err := s.H.retryWhile(ctx, []string{"locked"}, func() error {
		return s.H.API.Do(ctx, http.MethodPost, path, body, &resp)
	})
	if err != nil {
		return "", nil, err
	}
	id := idString(resp.Image.ID)
	Logf(ctx, "hcloud: creating snapshot %s of server %d", id, int64(server))
	if err := s.H.WaitActions(ctx, resp.Action); err != nil {
		return id, s.outputs(resp.Image, in), err
	}
	img, err := s.get(ctx, id)
	if err != nil {
		return id, s.outputs(resp.Image, in), err
	}
	return id, s.outputs(*img, in), nil
}

func (s *HcloudSnapshot) Read(ctx context.Context, id string, state Props) (Props, error) {
	if err := s.H.ready(); err != nil {
		return nil, err
	}
	img, err := s.get(ctx, id)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.outputs(*img, state), nil
}

func (s *HcloudSnapshot) Update(ctx context.Context, id string, olds, news Props) (Props, error) {
	if err := s.H.ready(); err != nil {
		return nil, err
	}
	body := map[string]any{"labels": StringMap(news, "labels")}
	if d := Str(news, "description"); d != "" {
		body["description"] = d
	}
	var resp struct {
		Image apiImage `json:"image"`
	}
	if err := s.H.API.Do(ctx, http.MethodPut, "/images/"+id, body, &resp); err != nil {
		return nil, err
	}
	return s.outputs(resp.Image, news), nil
}

func (s *HcloudSnapshot) Delete(ctx context.Context, id string, _ Props) error {
	if err := s.H.ready(); err != nil {
		return err
	}
	err := s.H.API.Do(ctx, http.MethodDelete, "/images/"+id, nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}
