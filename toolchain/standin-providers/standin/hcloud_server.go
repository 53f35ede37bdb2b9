package standin

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// HcloudServer is hcloud:index/server:Server.
type HcloudServer struct{ H *Hcloud }

var serverInputs = []string{
	"name", "serverType", "image", "location", "datacenter", "userData", "labels", "firewallIds",
	"sshKeys", "publicNets", "shutdownBeforeDeletion", "ignoreRemoteFirewallIds", "allowDeprecatedImages", "keepDisk",
}

// Inputs of the real provider this stand-in does not implement: setting them fails in Check.
var serverUnsupported = []string{
	"backups", "deleteProtection", "rebuildProtection", "iso", "rescue", "networks",
	"placementGroupId",
}

func (s *HcloudServer) InputKeys() []string { return serverInputs }

// ReplaceKeys: like the real provider, except that publicNets (changed in place by the real one,
// with a power cycle) replaces the server here. serverType changes in place (see changeType).
func (s *HcloudServer) ReplaceKeys() []string {
	return []string{"image", "location", "datacenter", "userData", "sshKeys", "publicNets"}
}

func (s *HcloudServer) Computed() []string {
	return []string{"ipv4Address", "ipv6Address", "ipv6Network", "status", "primaryDiskSize", "location",
		"datacenter", "backupWindow", "deleteProtection", "rebuildProtection", "backups"}
}

func (s *HcloudServer) Check(urnName string, news Props) (Props, []Failure) {
	var failures []Failure
	if _, set := news["name"]; !set {
		news["name"] = autoName(urnName)
	}
	for _, k := range []string{"serverType", "image"} {
		if v, set := news[k]; !set || v == "" {
			failures = append(failures, Failure{k, fmt.Sprintf("missing required property %q", k)})
		}
	}
	if ud, ok := news["userData"].(string); ok && len(ud) > 32*1024 {
		failures = append(failures, Failure{"userData", fmt.Sprintf("is %d bytes; Hetzner accepts at most 32 KiB", len(ud))})
	}
	for _, k := range serverUnsupported {
		if v, set := news[k]; set && !Equal(v, nil) && v != false {
			failures = append(failures, Failure{k, "not supported by Clawdet's offline stand-in hcloud provider; " +
				"install the real plugin (pulumi plugin install resource hcloud 1.39.1)"})
		}
	}
	for i, raw := range List(news, "firewallIds") {
		if _, ok := raw.(string); ok {
			if n, err := strconv.ParseFloat(raw.(string), 64); err == nil {
				news["firewallIds"].([]any)[i] = n
			} else {
				failures = append(failures, Failure{fmt.Sprintf("firewallIds[%d]", i), "is not a firewall id (a number)"})
			}
		}
	}
	return news, failures
}

type apiServer struct {
	ID           int64             `json:"id"`
	Name         string            `json:"name"`
	Status       string            `json:"status"`
	Labels       map[string]string `json:"labels"`
	PrimaryDisk  float64           `json:"primary_disk_size"`
	BackupWindow *string           `json:"backup_window"`
	ServerType   struct {
		Name string `json:"name"`
	} `json:"server_type"`
	Image *struct {
		ID   int64  `json:"id"`
		Name string `json:"name"`
	} `json:"image"`
	Datacenter struct {
		Name     string `json:"name"`
		Location struct {
			Name string `json:"name"`
		} `json:"location"`
	} `json:"datacenter"`
	Protection struct {
		Delete  bool `json:"delete"`
		Rebuild bool `json:"rebuild"`
	} `json:"protection"`
	PublicNet struct {
		IPv4 *struct {
			IP string `json:"ip"`
		} `json:"ipv4"`
		IPv6 *struct {
			IP string `json:"ip"`
		} `json:"ipv6"`
		Firewalls []struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
		} `json:"firewalls"`
	} `json:"public_net"`
}

func (s *HcloudServer) outputs(srv apiServer, prev Props) Props {
	out := Props{}
	for _, k := range []string{"userData", "sshKeys", "datacenter"} {
		if v, ok := prev[k]; ok {
			out[k] = v // the API does not return them
		}
	}
	out["name"] = srv.Name
	out["serverType"] = srv.ServerType.Name
	out["labels"] = AnyMap(srv.Labels)
	out["location"] = srv.Datacenter.Location.Name
	if _, ok := prev["datacenter"]; ok {
		out["datacenter"] = srv.Datacenter.Name
	}
	out["image"] = prev["image"]
	if srv.Image != nil {
		was := Str(prev, "image")
		if was == "" || (was != srv.Image.Name && was != idString(srv.Image.ID)) {
			out["image"] = srv.Image.Name // as the real provider: the name, or a snapshot's id
			if srv.Image.Name == "" {
				out["image"] = idString(srv.Image.ID)
			}
		}
	}
	out["status"] = srv.Status
	out["primaryDiskSize"] = srv.PrimaryDisk
	out["backupWindow"] = ""
	if srv.BackupWindow != nil {
		out["backupWindow"] = *srv.BackupWindow
	}
	out["backups"] = srv.BackupWindow != nil
	out["deleteProtection"] = srv.Protection.Delete
	out["rebuildProtection"] = srv.Protection.Rebuild
	for _, k := range []string{"shutdownBeforeDeletion", "ignoreRemoteFirewallIds", "allowDeprecatedImages", "keepDisk"} {
		out[k] = Bool(prev, k, false)
	}

	out["ipv4Address"], out["ipv6Address"], out["ipv6Network"] = "", "", ""
	if srv.PublicNet.IPv4 != nil {
		out["ipv4Address"] = srv.PublicNet.IPv4.IP
	}
	if srv.PublicNet.IPv6 != nil {
		network := srv.PublicNet.IPv6.IP
		out["ipv6Network"] = network
		out["ipv6Address"] = strings.SplitN(network, "/", 2)[0] + "1"
	}
	net := Props{}
	if prevNets := List(prev, "publicNets"); len(prevNets) > 0 {
		for k, v := range Object(prevNets[0]) {
			net[k] = v
		}
	}
	net["ipv4Enabled"] = srv.PublicNet.IPv4 != nil
	net["ipv6Enabled"] = srv.PublicNet.IPv6 != nil
	out["publicNets"] = []any{net}

	live := []any{}
	for _, fw := range srv.PublicNet.Firewalls {
		live = append(live, float64(fw.ID))
	}
	prevIDs := List(prev, "firewallIds")
	switch {
	case Bool(prev, "ignoreRemoteFirewallIds", false):
		out["firewallIds"] = prevIDs
	case SameStringSet(Strings(prevIDs), Strings(live)):
		out["firewallIds"] = prevIDs // keep the program's order
	default:
		out["firewallIds"] = live
	}
	if out["firewallIds"] == nil {
		out["firewallIds"] = []any{}
	}
	return out
}

func sshKeyRefs(keys []string) []any {
	out := []any{}
	for _, k := range keys {
		if n, err := strconv.ParseInt(k, 10, 64); err == nil {
			out = append(out, n) // an id
		} else {
			out = append(out, k) // a name
		}
	}
	return out
}

func (s *HcloudServer) Create(ctx context.Context, in Props) (string, Props, error) {
	if err := s.H.ready(); err != nil {
		return "", nil, err
	}
	body := map[string]any{
		"name": Str(in, "name"), "server_type": Str(in, "serverType"), "image": Str(in, "image"),
		"labels": StringMap(in, "labels"), "start_after_create": true,
	}
	if loc := Str(in, "location"); loc != "" {
		body["location"] = loc
	}
	if dc := Str(in, "datacenter"); dc != "" {
		body["datacenter"] = dc
	}
	if ud := Str(in, "userData"); ud != "" {
		body["user_data"] = ud
	}
	if keys := Strings(in["sshKeys"]); len(keys) > 0 {
		body["ssh_keys"] = sshKeyRefs(keys)
	}
	var firewalls []map[string]any
	for _, id := range List(in, "firewallIds") {
		if n, ok := id.(float64); ok {
			firewalls = append(firewalls, map[string]any{"firewall": int64(n)})
		}
	}
	if len(firewalls) > 0 {
		body["firewalls"] = firewalls
	}
	if nets := List(in, "publicNets"); len(nets) > 0 {
		n := Object(nets[0])
		body["public_net"] = map[string]any{"enable_ipv4": Bool(n, "ipv4Enabled", true), "enable_ipv6": Bool(n, "ipv6Enabled", true)}
	}
	var resp struct {
		Server      apiServer       `json:"server"`
		Action      *hcloudAction   `json:"action"`
		NextActions []*hcloudAction `json:"next_actions"`
	}
	if err := s.H.API.Do(ctx, http.MethodPost, "/servers", body, &resp); err != nil {
		return "", nil, err
	}
	id := idString(resp.Server.ID)
	Logf(ctx, "hcloud: created server %s (%s); waiting for it to start", id, resp.Server.Name)
	outs := s.outputs(resp.Server, in)
	if err := s.H.WaitActions(ctx, append([]*hcloudAction{resp.Action}, resp.NextActions...)...); err != nil {
		return id, outs, err
	}
	srv, err := s.get(ctx, id)
	if err != nil {
		return id, outs, err
	}
	return id, s.outputs(*srv, in), nil
}

func (s *HcloudServer) get(ctx context.Context, id string) (*apiServer, error) {
	n, err := parseID("server", id)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Server apiServer `json:"server"`
	}
	if err := s.H.API.Do(ctx, http.MethodGet, fmt.Sprintf("/servers/%d", n), nil, &resp); err != nil {
		return nil, err
	}
	return &resp.Server, nil
}

func (s *HcloudServer) Read(ctx context.Context, id string, state Props) (Props, error) {
	if err := s.H.ready(); err != nil {
		return nil, err
	}
	srv, err := s.get(ctx, id)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return s.outputs(*srv, state), nil
}

func (s *HcloudServer) Update(ctx context.Context, id string, olds, news Props) (Props, error) {
	if err := s.H.ready(); err != nil {
		return nil, err
	}
	if Str(olds, "name") != Str(news, "name") || !Equal(olds["labels"], news["labels"]) {
		body := map[string]any{"name": Str(news, "name"), "labels": StringMap(news, "labels")}
		if err := s.H.API.Do(ctx, http.MethodPut, "/servers/"+id, body, nil); err != nil {
			return nil, err
		}
	}
	if serverType := Str(news, "serverType"); serverType != Str(olds, "serverType") {
		if err := s.changeType(ctx, id, serverType, Bool(news, "keepDisk", false)); err != nil {
			return nil, err
		}
	}
	if !Bool(news, "ignoreRemoteFirewallIds", false) {
		if err := s.syncFirewalls(ctx, id, List(olds, "firewallIds"), List(news, "firewallIds")); err != nil {
			return nil, err
		}
	}
	srv, err := s.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.outputs(*srv, news), nil
}

// syncFirewalls applies the firewalls that are new and removes those no longer listed.
func (s *HcloudServer) syncFirewalls(ctx context.Context, id string, olds, news []any) error {
	serverID, err := parseID("server", id)
	if err != nil {
		return err
	}
	target := []map[string]any{{"type": "server", "server": map[string]any{"id": serverID}}}
	oldSet, newSet := map[string]bool{}, map[string]bool{}
	for _, v := range Strings(olds) {
		oldSet[v] = true
	}
	for _, v := range Strings(news) {
		newSet[v] = true
	}
	change := func(fw, verb, field string, okCodes ...string) error {
		var resp struct {
			Actions []*hcloudAction `json:"actions"`
		}
		err := s.H.retryWhile(ctx, []string{"locked"}, func() error {
			return s.H.API.Do(ctx, http.MethodPost, "/firewalls/"+fw+"/actions/"+verb, map[string]any{field: target}, &resp)
		})
		if err != nil && !contains(okCodes, ErrorCode(err)) {
			return err
		}
		return s.H.WaitActions(ctx, resp.Actions...)
	}
	for fw := range newSet {
		if !oldSet[fw] {
			if err := change(fw, "apply_to_resources", "apply_to", "firewall_already_applied"); err != nil {
				return err
			}
		}
	}
	for fw := range oldSet {
		if !newSet[fw] {
			if err := change(fw, "remove_from_resources", "remove_from", "firewall_already_removed", "not_found"); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s *HcloudServer) Delete(ctx context.Context, id string, state Props) error {
	if err := s.H.ready(); err != nil {
		return err
	}
	if Bool(state, "shutdownBeforeDeletion", false) {
		if err := s.shutdown(ctx, id, "before deleting it"); err != nil {
			if IsNotFound(err) {
				return nil
			}
			Logf(ctx, "hcloud: graceful shutdown of server %s failed (%v); deleting it anyway", id, short(err))
		}
	}
	var resp struct {
		Action *hcloudAction `json:"action"`
	}
	err := s.H.retryWhile(ctx, []string{"locked"}, func() error {
		return s.H.API.Do(ctx, http.MethodDelete, "/servers/"+id, nil, &resp)
	})
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	Logf(ctx, "hcloud: deleting server %s", id)
	return s.H.WaitActions(ctx, resp.Action)
}
