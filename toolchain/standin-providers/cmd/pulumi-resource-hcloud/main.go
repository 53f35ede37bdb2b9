// pulumi-resource-hcloud: Clawdet's OFFLINE STAND-IN for the Pulumi hcloud provider (see README.md).
package main

import (
	"fmt"
	"os"
	"time"

	"clawdet.local/standin_providers/standin"
)

// version is the real provider's version this stands in for, set with -ldflags "-X main.version=...".
var version = "1.39.1"

func main() {
	h := &standin.Hcloud{Version: version}
	p := &standin.Provider{
		Name: "hcloud", Version: version, Config: h, DefaultTimeout: 20 * time.Minute,
		Resources: map[string]standin.Resource{
			"hcloud:index/server:Server":                     &standin.HcloudServer{H: h},
			"hcloud:index/firewall:Firewall":                 &standin.HcloudFirewall{H: h},
			"hcloud:index/volume:Volume":                     &standin.HcloudVolume{H: h},
			"hcloud:index/volumeAttachment:VolumeAttachment": &standin.HcloudVolumeAttachment{H: h},
			"hcloud:index/snapshot:Snapshot":                 &standin.HcloudSnapshot{H: h},
		},
	}
	if err := standin.Serve(p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
