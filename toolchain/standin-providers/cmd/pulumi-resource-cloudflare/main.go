// pulumi-resource-cloudflare: Clawdet's OFFLINE STAND-IN for the Pulumi cloudflare provider (see README.md).
package main

import (
	"fmt"
	"os"
	"time"

	"clawdet.local/standin_providers/standin"
)

// version is the real provider's version this stands in for, set with -ldflags "-X main.version=...".
var version = "6.17.0"

func main() {
	c := &standin.Cloudflare{Version: version}
	p := &standin.Provider{
		Name: "cloudflare", Version: version, Config: c, DefaultTimeout: 10 * time.Minute,
		Resources: map[string]standin.Resource{
			"cloudflare:index/dnsRecord:DnsRecord": &standin.CloudflareDNSRecord{C: c},
		},
	}
	if err := standin.Serve(p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
