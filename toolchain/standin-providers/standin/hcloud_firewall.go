package standin

import (
	"context"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"
)

// HcloudFirewall is hcloud:index/firewall:Firewall: name, labels, rules; applyTos only at create.
type HcloudFirewall struct{ H *Hcloud }

func (f *HcloudFirewall) InputKeys() []string   { return []string{"name", "labels", "rules", "applyTos"} }
func (f *HcloudFirewall) ReplaceKeys() []string { return nil }
func (f *HcloudFirewall) Computed() []string    { return nil }

func (f *HcloudFirewall) Check(urnName string, news Props) (Props, []Failure) {
	var failures []Failure
	if _, set := news["name"]; !set {
		news["name"] = autoName(urnName)
	}
	if rules, ok := news["rules"].([]any); ok {
		for i, raw := range rules {
			rule := Object(raw)
			if rule == nil {
				continue // unknown during a preview
			}
			where := fmt.Sprintf("rules[%d]", i)
			dir, proto := rule["direction"], rule["protocol"]
			if d, ok := dir.(string); ok && d != "in" && d != "out" {
				failures = append(failures, Failure{where + ".direction", fmt.Sprintf("%q is not in or out", d)})
			}
			if p, ok := proto.(string); ok && !contains([]string{"tcp", "udp", "icmp", "esp", "gre"}, p) {
				failures = append(failures, Failure{where + ".protocol", fmt.Sprintf("%q is not tcp, udp, icmp, esp or gre", p)})
			}
			if dir == nil {
				failures = append(failures, Failure{where + ".direction", "missing required property"})
			}
			if proto == nil {
				failures = append(failures, Failure{where + ".protocol", "missing required property"})
			}
			if p, _ := proto.(string); (p == "tcp" || p == "udp") && rule["port"] == nil {
				failures = append(failures, Failure{where + ".port", "required for tcp and udp rules"})
			}
			if !ContainsUnknown(rule) {
				rules[i] = canonicalRule(rule)
			}
		}
	}
	return news, failures
}

// canonicalRule gives a rule the shape the state holds, so that inputs and state compare equal.
func canonicalRule(rule Props) Props {
	out := Props{
		"direction":      rule["direction"],
		"protocol":       rule["protocol"],
		"sourceIps":      AnyStrings(Strings(rule["sourceIps"])),
		"destinationIps": AnyStrings(Strings(rule["destinationIps"])),
	}
	for _, k := range []string{"port", "description"} {
		if s, ok := rule[k].(string); ok && s != "" {
			out[k] = s
		}
	}
	return out
}

type apiFirewallRule struct {
	Direction      string   `json:"direction"`
	Protocol       string   `json:"protocol"`
	Port           *string  `json:"port,omitempty"`
	SourceIPs      []string `json:"source_ips"`
	DestinationIPs []string `json:"destination_ips"`
	Description    *string  `json:"description,omitempty"`
}

type apiFirewall struct {
	ID        int64             `json:"id"`
	Name      string            `json:"name"`
	Labels    map[string]string `json:"labels"`
	Rules     []apiFirewallRule `json:"rules"`
	AppliedTo []any             `json:"applied_to"`
}

func apiRules(rules []any) []apiFirewallRule {
	out := []apiFirewallRule{}
	for _, raw := range rules {
		r := canonicalRule(Object(raw))
		rule := apiFirewallRule{
			Direction: Str(r, "direction"), Protocol: Str(r, "protocol"),
			SourceIPs: Strings(r["sourceIps"]), DestinationIPs: Strings(r["destinationIps"]),
		}
		if s := Str(r, "port"); s != "" {
			rule.Port = &s
		}
		if s := Str(r, "description"); s != "" {
			rule.Description = &s
		}
		out = append(out, rule)
	}
	return out
}

func stateRules(rules []apiFirewallRule) []any {
	out := []any{}
	for _, r := range rules {
		p := Props{"direction": r.Direction, "protocol": r.Protocol,
			"sourceIps": AnyStrings(r.SourceIPs), "destinationIps": AnyStrings(r.DestinationIPs)}
		if r.SourceIPs == nil {
			p["sourceIps"] = []any{}
		}
		if r.DestinationIPs == nil {
			p["destinationIps"] = []any{}
		}
		if r.Port != nil && *r.Port != "" {
			p["port"] = *r.Port
		}
		if r.Description != nil && *r.Description != "" {
			p["description"] = *r.Description
		}
		out = append(out, p)
	}
	return out
}

// ruleKey identifies a rule regardless of the order of its addresses (the API keeps them as sets).
func ruleKey(raw any) string {
	r := Object(raw)
	src, dst := Strings(r["sourceIps"]), Strings(r["destinationIps"])
	sort.Strings(src)
	sort.Strings(dst)
	return strings.Join([]string{Str(r, "direction"), Str(r, "protocol"), Str(r, "port"),
		strings.Join(src, ","), strings.Join(dst, ","), Str(r, "description")}, "|")
}

func sameRules(a, b []any) bool {
	ka, kb := make([]string, len(a)), make([]string, len(b))
	for i, r := range a {
		ka[i] = ruleKey(r)
	}
	for i, r := range b {
		kb[i] = ruleKey(r)
	}
	return SameStringSet(ka, kb)
}

func (f *HcloudFirewall) outputs(fw apiFirewall, previous Props) Props {
	rules := stateRules(fw.Rules)
	if prev := List(previous, "rules"); prev != nil && sameRules(prev, rules) {
		rules = prev // the same set: keep the program's order
	}
	out := Props{"name": fw.Name, "labels": AnyMap(fw.Labels), "rules": rules}
	if v, ok := previous["applyTos"]; ok {
		out["applyTos"] = v
	}
	return out
}

func (f *HcloudFirewall) Create(ctx context.Context, in Props) (string, Props, error) {
	if err := f.H.ready(); err != nil {
		return "", nil, err
	}
	body := map[string]any{"name": Str(in, "name"), "labels": StringMap(in, "labels"), "rules": apiRules(List(in, "rules"))}
	var applyTo []map[string]any
	for _, raw := range List(in, "applyTos") {
		a := Object(raw)
		if id, ok := Num(a, "server"); ok {
			applyTo = append(applyTo, map[string]any{"type": "server", "server": map[string]any{"id": int64(id)}})
		} else if sel := Str(a, "labelSelector"); sel != "" {
			applyTo = append(applyTo, map[string]any{"type": "label_selector", "label_selector": map[string]any{"selector": sel}})
		}
	}
	if len(applyTo) > 0 {
		body["apply_to"] = applyTo
	}
	var resp struct {
		Firewall apiFirewall     `json:"firewall"`
		Actions  []*hcloudAction `json:"actions"`
	}
	if err := f.H.API.Do(ctx, http.MethodPost, "/firewalls", body, &resp); err != nil {
		return "", nil, err
	}
	id := idString(resp.Firewall.ID)
	Logf(ctx, "hcloud: created firewall %s (%s)", id, resp.Firewall.Name)
	outs := f.outputs(resp.Firewall, in)
	return id, outs, f.H.WaitActions(ctx, resp.Actions...)
}

func (f *HcloudFirewall) get(ctx context.Context, id string) (*apiFirewall, error) {
	n, err := parseID("firewall", id)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Firewall apiFirewall `json:"firewall"`
	}
	if err := f.H.API.Do(ctx, http.MethodGet, fmt.Sprintf("/firewalls/%d", n), nil, &resp); err != nil {
		return nil, err
	}
	return &resp.Firewall, nil
}

func (f *HcloudFirewall) Read(ctx context.Context, id string, state Props) (Props, error) {
	if err := f.H.ready(); err != nil {
		return nil, err
	}
	fw, err := f.get(ctx, id)
	if IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return f.outputs(*fw, state), nil
}

func (f *HcloudFirewall) Update(ctx context.Context, id string, olds, news Props) (Props, error) {
	if err := f.H.ready(); err != nil {
		return nil, err
	}
	if !Equal(olds["applyTos"], news["applyTos"]) {
		return nil, fmt.Errorf("hcloud: the offline stand-in provider does not change applyTos of an existing firewall; " +
			"replace the firewall or use the real provider")
	}
	path := "/firewalls/" + id
	if Str(olds, "name") != Str(news, "name") || !Equal(olds["labels"], news["labels"]) {
		body := map[string]any{"name": Str(news, "name"), "labels": StringMap(news, "labels")}
		if err := f.H.API.Do(ctx, http.MethodPut, path, body, nil); err != nil {
			return nil, err
		}
	}
	if !sameRules(List(olds, "rules"), List(news, "rules")) {
		var resp struct {
			Actions []*hcloudAction `json:"actions"`
		}
		body := map[string]any{"rules": apiRules(List(news, "rules"))}
		if err := f.H.API.Do(ctx, http.MethodPost, path+"/actions/set_rules", body, &resp); err != nil {
			return nil, err
		}
		if err := f.H.WaitActions(ctx, resp.Actions...); err != nil {
			return nil, err
		}
	}
	fw, err := f.get(ctx, id)
	if err != nil {
		return nil, err
	}
	return f.outputs(*fw, news), nil
}

func (f *HcloudFirewall) Delete(ctx context.Context, id string, _ Props) error {
	if err := f.H.ready(); err != nil {
		return err
	}
	// A server deleted just before may still hold the firewall for a moment.
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	err := f.H.retryWhile(ctx, []string{"resource_in_use", "locked"}, func() error {
		return f.H.API.Do(ctx, http.MethodDelete, "/firewalls/"+id, nil, nil)
	})
	if IsNotFound(err) {
		return nil
	}
	return err
}
