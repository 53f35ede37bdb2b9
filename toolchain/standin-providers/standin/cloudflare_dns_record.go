package standin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// CloudflareDNSRecord is cloudflare:index/dnsRecord:DnsRecord (zoneId, name, type, content,
// proxied, ttl, comment, priority, tags).
type CloudflareDNSRecord struct{ C *Cloudflare }

var dnsUnsupported = []string{"data", "settings"}

func (d *CloudflareDNSRecord) InputKeys() []string {
	return []string{"zoneId", "name", "type", "content", "proxied", "ttl", "comment", "priority", "tags"}
}
func (d *CloudflareDNSRecord) ReplaceKeys() []string { return []string{"zoneId"} }
func (d *CloudflareDNSRecord) Computed() []string {
	return []string{"proxiable", "createdOn", "modifiedOn", "commentModifiedOn", "tagsModifiedOn"}
}

func (d *CloudflareDNSRecord) Check(_ string, news Props) (Props, []Failure) {
	var failures []Failure
	for _, k := range []string{"zoneId", "name", "type", "ttl"} {
		if v, set := news[k]; !set || v == "" {
			failures = append(failures, Failure{k, fmt.Sprintf("missing required property %q", k)})
		}
	}
	if t, ok := news["type"].(string); ok && t != strings.ToUpper(t) {
		news["type"] = strings.ToUpper(t)
	}
	if _, set := news["content"]; !set {
		failures = append(failures, Failure{"content", "missing: the offline stand-in needs content (records with data are not supported)"})
	}
	if ttl, ok := news["ttl"].(float64); ok && ttl != 1 && (ttl < 30 || ttl > 86400) {
		failures = append(failures, Failure{"ttl", fmt.Sprintf("%v is not 1 (automatic) or 30..86400 seconds", ttl)})
	}
	for _, k := range dnsUnsupported {
		if v, set := news[k]; set && !Equal(v, nil) {
			failures = append(failures, Failure{k, "not supported by Clawdet's offline stand-in cloudflare provider; " +
				"install the real plugin (pulumi plugin install resource cloudflare 6.17.0)"})
		}
	}
	return news, failures
}

type apiRecord struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Type       string   `json:"type"`
	Content    string   `json:"content"`
	Proxied    bool     `json:"proxied"`
	Proxiable  bool     `json:"proxiable"`
	TTL        float64  `json:"ttl"`
	Comment    *string  `json:"comment"`
	Priority   *float64 `json:"priority"`
	Tags       []string `json:"tags"`
	CreatedOn  string   `json:"created_on"`
	ModifiedOn string   `json:"modified_on"`
	CommentMod string   `json:"comment_modified_on"`
	TagsMod    string   `json:"tags_modified_on"`
}

func (d *CloudflareDNSRecord) path(zoneID, id string) string {
	p := "/zones/" + url.PathEscape(zoneID) + "/dns_records"
	if id != "" {
		p += "/" + url.PathEscape(id)
	}
	return p
}

func recordBody(in Props) map[string]any {
	body := map[string]any{
		"name": Str(in, "name"), "type": Str(in, "type"), "content": Str(in, "content"),
		"proxied": Bool(in, "proxied", false),
	}
	if ttl, ok := Num(in, "ttl"); ok {
		body["ttl"] = ttl
	}
	if c, ok := in["comment"].(string); ok {
		body["comment"] = c
	}
	if p, ok := Num(in, "priority"); ok {
		body["priority"] = p
	}
	if tags, ok := in["tags"]; ok {
		body["tags"] = Strings(tags)
	}
	return body
}

// outputs keeps the program's spelling of name when it denotes the same record (the API
// answers with the lower-case FQDN; the real v6 provider accepts either), and the program's
// ttl of a proxied record (Cloudflare reports 1 for every proxied record).
func (d *CloudflareDNSRecord) outputs(ctx context.Context, zoneID string, r apiRecord, prev Props) Props {
	out := Props{
		"zoneId": zoneID, "name": r.Name, "type": r.Type, "content": r.Content, "proxied": r.Proxied,
		"ttl": r.TTL, "proxiable": r.Proxiable, "createdOn": r.CreatedOn, "modifiedOn": r.ModifiedOn,
		"commentModifiedOn": r.CommentMod, "tagsModifiedOn": r.TagsMod, "tags": AnyStrings(r.Tags),
	}
	if r.Tags == nil {
		out["tags"] = []any{}
	}
	if was := Str(prev, "name"); was != "" && d.sameName(ctx, zoneID, was, r.Name) {
		out["name"] = was
	}
	if r.Proxied && r.TTL == 1 {
		if ttl, ok := Num(prev, "ttl"); ok {
			out["ttl"] = ttl
		}
	}
	if r.Comment != nil && *r.Comment != "" {
		out["comment"] = *r.Comment
	} else if _, had := prev["comment"]; had {
		out["comment"] = ""
	}
	if r.Priority != nil {
		out["priority"] = *r.Priority
	}
	return out
}

func (d *CloudflareDNSRecord) sameName(ctx context.Context, zoneID, given, live string) bool {
	g, l := strings.TrimSuffix(strings.ToLower(given), "."), strings.ToLower(live)
	if g == l {
		return true
	}
	zone, err := d.C.zoneName(ctx, zoneID)
	if err != nil || zone == "" {
		return false
	}
	if g == "@" {
		return l == zone
	}
	return g+"."+zone == l
}

func (d *CloudflareDNSRecord) Create(ctx context.Context, in Props) (string, Props, error) {
	if err := d.C.ready(); err != nil {
		return "", nil, err
	}
	zoneID := Str(in, "zoneId")
	var resp struct {
		Result apiRecord `json:"result"`
	}
	if err := d.C.API.Do(ctx, http.MethodPost, d.path(zoneID, ""), recordBody(in), &resp); err != nil {
		return "", nil, err
	}
	Logf(ctx, "cloudflare: created %s record %s", resp.Result.Type, resp.Result.Name)
	return resp.Result.ID, d.outputs(ctx, zoneID, resp.Result, in), nil
}

func (d *CloudflareDNSRecord) Read(ctx context.Context, id string, state Props) (Props, error) {
	if err := d.C.ready(); err != nil {
		return nil, err
	}
	zoneID := Str(state, "zoneId")
	if zoneID == "" {
		return nil, fmt.Errorf("cloudflare: record %s has no zoneId in its state (import as <zoneId>/<recordId> is not supported by the stand-in)", id)
	}
	var resp struct {
		Result apiRecord `json:"result"`
	}
	err := d.C.API.Do(ctx, http.MethodGet, d.path(zoneID, id), nil, &resp)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return d.outputs(ctx, zoneID, resp.Result, state), nil
}

func (d *CloudflareDNSRecord) Update(ctx context.Context, id string, _, news Props) (Props, error) {
	if err := d.C.ready(); err != nil {
		return nil, err
	}
	zoneID := Str(news, "zoneId")
	var resp struct {
		Result apiRecord `json:"result"`
	}
	if err := d.C.API.Do(ctx, http.MethodPut, d.path(zoneID, id), recordBody(news), &resp); err != nil {
		return nil, err
	}
	return d.outputs(ctx, zoneID, resp.Result, news), nil
}

func (d *CloudflareDNSRecord) Delete(ctx context.Context, id string, state Props) error {
	if err := d.C.ready(); err != nil {
		return err
	}
	err := d.C.API.Do(ctx, http.MethodDelete, d.path(Str(state, "zoneId"), id), nil, nil)
	if IsNotFound(err) {
		return nil
	}
	return err
}
