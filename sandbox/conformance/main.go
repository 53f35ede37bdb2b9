// Command conformance drives the sandbox with the Go client libraries the real Pulumi providers
// are built on (hcloud-go v2.44.0 inside pulumi-resource-hcloud 1.39.1, cloudflare-go v6.10.0
// inside pulumi-resource-cloudflare 6.17.0), making the calls those providers make on create,
// read, update and delete. It prints one JSON object with what it saw; any failure exits 1.
//
// Usage: conformance -hcloud-endpoint URL -hcloud-token T -cloudflare-url URL -cloudflare-token T -zone-id Z
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/cloudflare/cloudflare-go/v6"
	"github.com/cloudflare/cloudflare-go/v6/dns"
	"github.com/cloudflare/cloudflare-go/v6/option"
	"github.com/cloudflare/cloudflare-go/v6/zones"
	"github.com/hetznercloud/hcloud-go/v2/hcloud"
)

type report map[string]any

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func check(ok bool, what string) {
	if !ok {
		fmt.Fprintf(os.Stderr, "check failed: %s\n", what)
		os.Exit(1)
	}
}

func hetzner(ctx context.Context, endpoint, token string, out report) {
	client := hcloud.NewClient(
		hcloud.WithToken(token), hcloud.WithEndpoint(endpoint), hcloud.WithApplication("hcloud-terraform", "1.66.1"),
		hcloud.WithPollOpts(hcloud.PollOpts{BackoffFunc: hcloud.ConstantBackoff(50 * time.Millisecond)}),
	)
	// resourceServerCreate: server type first, then the image for its architecture.
	serverType, _, err := client.ServerType.Get(ctx, "cx22")
	must(err, "ServerType.Get")
	check(serverType != nil && serverType.Architecture == hcloud.ArchitectureX86, "server type cx22 is x86")
	image, _, err := client.Image.GetForArchitecture(ctx, "ubuntu-24.04", serverType.Architecture)
	must(err, "Image.GetForArchitecture")
	check(image != nil && image.Name == "ubuntu-24.04", "image found by name and architecture")

	port := "443"
	fw, _, err := client.Firewall.Create(ctx, hcloud.FirewallCreateOpts{
		Name:   "conformance-fw",
		Labels: map[string]string{"managed-by": "clawdet"},
		Rules: []hcloud.FirewallRule{{Direction: hcloud.FirewallRuleDirectionIn, Protocol: hcloud.FirewallRuleProtocolTCP,
			Port: &port, SourceIPs: parseCIDRs("0.0.0.0/0", "::/0")}},
	})
	must(err, "Firewall.Create")
	must(client.Action.WaitFor(ctx, fw.Actions...), "WaitFor firewall actions")

	created, _, err := client.Server.Create(ctx, hcloud.ServerCreateOpts{
		Name: "conformance-server", ServerType: &hcloud.ServerType{Name: "cx22"}, Image: image,
		Location: &hcloud.Location{Name: "fsn1"}, UserData: "#cloud-config\n{}\n",
		Labels:    map[string]string{"managed-by": "clawdet", "clawdet-instance": "conformance"},
		Firewalls: []*hcloud.ServerCreateFirewall{{Firewall: hcloud.Firewall{ID: fw.Firewall.ID}}},
		PublicNet: &hcloud.ServerCreatePublicNet{EnableIPv4: true, EnableIPv6: true},
	})
	must(err, "Server.Create")
	must(client.Action.WaitFor(ctx, created.Action), "WaitFor create_server")
	for _, next := range created.NextActions {
		must(client.Action.WaitFor(ctx, next), "WaitFor next action")
	}
	server, _, err := client.Server.Get(ctx, fmt.Sprint(created.Server.ID))
	must(err, "Server.Get")
	check(server != nil && server.Status == hcloud.ServerStatusRunning, "server running after its actions")
	check(len(server.PublicNet.Firewalls) == 1 && server.PublicNet.Firewalls[0].Firewall.ID == fw.Firewall.ID,
		"firewall applied")
	check(server.PublicNet.IPv6.Network != nil, "ipv6 network parsed")
	out["server_id"] = server.ID
	out["ipv4"] = server.PublicNet.IPv4.IP.String()
	out["ipv6_network"] = server.PublicNet.IPv6.Network.String()
	out["server_type"] = server.ServerType.Name
	out["location"] = server.Location.Name

	_, _, err = client.Server.Update(ctx, server, hcloud.ServerUpdateOpts{Labels: map[string]string{
		"managed-by": "clawdet", "clawdet-instance": "conformance", "tier": "pro"}})
	must(err, "Server.Update")
	listed, err := client.Server.AllWithOpts(ctx, hcloud.ServerListOpts{ListOpts: hcloud.ListOpts{
		LabelSelector: "managed-by=clawdet,tier in (pro)"}})
	must(err, "Server.AllWithOpts")
	check(len(listed) == 1, "label selector lists the server")

	_, _, err = client.Server.Create(ctx, hcloud.ServerCreateOpts{Name: "conformance-server",
		ServerType: &hcloud.ServerType{Name: "cx22"}, Image: image})
	check(hcloud.IsError(err, hcloud.ErrorCodeUniquenessError), "duplicate name is a uniqueness_error")

	readFw, _, err := client.Firewall.GetByID(ctx, fw.Firewall.ID)
	must(err, "Firewall.GetByID")
	check(len(readFw.AppliedTo) == 1 && readFw.AppliedTo[0].Server.ID == server.ID, "firewall applied_to")

	shutdown, _, err := client.Server.Shutdown(ctx, &hcloud.Server{ID: server.ID})
	must(err, "Server.Shutdown")
	must(client.Action.WaitFor(ctx, shutdown), "WaitFor shutdown")
	off, _, err := client.Server.GetByID(ctx, server.ID)
	must(err, "GetByID after shutdown")
	check(off.Status == hcloud.ServerStatusOff, "server off after shutdown")

	deleted, _, err := client.Server.DeleteWithResult(ctx, &hcloud.Server{ID: server.ID})
	must(err, "Server.DeleteWithResult")
	must(client.Action.WaitFor(ctx, deleted.Action), "WaitFor delete_server")
	gone, _, err := client.Server.Get(ctx, fmt.Sprint(server.ID))
	must(err, "Server.Get after delete")
	check(gone == nil, "a deleted server reads as nil")
	_, err = client.Firewall.Delete(ctx, fw.Firewall)
	must(err, "Firewall.Delete")
	out["hcloud"] = "ok"
}

func cf(ctx context.Context, baseURL, token, zoneID, ipv4 string, out report) {
	client := cloudflare.NewClient(option.WithAPIToken(token), option.WithBaseURL(baseURL), option.WithMaxRetries(0))
	zone, err := client.Zones.Get(ctx, zones.ZoneGetParams{ZoneID: cloudflare.F(zoneID)})
	must(err, "Zones.Get")
	out["zone_name"] = zone.Name

	// The provider sends its own JSON body and decodes the raw response (resource.go Create).
	body := []byte(fmt.Sprintf(`{"name":"conformance","type":"A","content":%q,"ttl":1,"proxied":true}`, ipv4))
	res := new(http.Response)
	_, err = client.DNS.Records.New(ctx, dns.RecordNewParams{ZoneID: cloudflare.F(zoneID)},
		option.WithRequestBody("application/json", body), option.WithResponseBodyInto(&res))
	must(err, "DNS.Records.New")
	raw, _ := io.ReadAll(res.Body)
	var envelope struct {
		Success bool           `json:"success"`
		Result  map[string]any `json:"result"`
	}
	must(json.Unmarshal(raw, &envelope), "decode create response")
	check(envelope.Success, "create succeeded")
	id, _ := envelope.Result["id"].(string)
	check(len(id) == 32, "record id is 32 hex")
	check(envelope.Result["name"] == "conformance."+zone.Name, "name is the FQDN")
	check(envelope.Result["ttl"] == float64(1) && envelope.Result["proxied"] == true, "proxied with ttl 1")

	got, err := client.DNS.Records.Get(ctx, id, dns.RecordGetParams{ZoneID: cloudflare.F(zoneID)})
	must(err, "DNS.Records.Get")
	check(got.Content == ipv4, "content read back")

	update := []byte(`{"name":"conformance","type":"A","content":"127.9.9.9","ttl":1,"proxied":true}`)
	_, err = client.DNS.Records.Update(ctx, id, dns.RecordUpdateParams{ZoneID: cloudflare.F(zoneID)},
		option.WithRequestBody("application/json", update))
	must(err, "DNS.Records.Update")

	page, err := client.DNS.Records.List(ctx, dns.RecordListParams{ZoneID: cloudflare.F(zoneID),
		Name: cloudflare.F(dns.RecordListParamsName{Exact: cloudflare.F("conformance." + zone.Name)})})
	must(err, "DNS.Records.List")
	check(len(page.Result) == 1 && page.Result[0].Content == "127.9.9.9", "list by exact name sees the update")

	_, err = client.DNS.Records.Delete(ctx, id, dns.RecordDeleteParams{ZoneID: cloudflare.F(zoneID)})
	must(err, "DNS.Records.Delete")
	res = new(http.Response)
	_, err = client.DNS.Records.Get(ctx, id, dns.RecordGetParams{ZoneID: cloudflare.F(zoneID)},
		option.WithResponseBodyInto(&res))
	var apiErr *cloudflare.Error
	check(errors.As(err, &apiErr) && apiErr.StatusCode == 404, "deleted record reads 404")
	out["cloudflare"] = "ok"
}

func parseCIDRs(values ...string) []net.IPNet {
	nets := make([]net.IPNet, 0, len(values))
	for _, value := range values {
		_, network, err := net.ParseCIDR(value)
		must(err, "parse CIDR "+value)
		nets = append(nets, *network)
	}
	return nets
}

func main() {
	hcloudEndpoint := flag.String("hcloud-endpoint", "", "")
	hcloudToken := flag.String("hcloud-token", "", "")
	cloudflareURL := flag.String("cloudflare-url", "", "")
	cloudflareToken := flag.String("cloudflare-token", "", "")
	zoneID := flag.String("zone-id", "", "")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out := report{}
	hetzner(ctx, *hcloudEndpoint, *hcloudToken, out)
	cf(ctx, *cloudflareURL, *cloudflareToken, *zoneID, out["ipv4"].(string), out)
	must(json.NewEncoder(os.Stdout).Encode(out), "encode report")
}
