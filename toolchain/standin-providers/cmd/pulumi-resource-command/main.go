// pulumi-resource-command: Clawdet's OFFLINE STAND-IN for the Pulumi command provider (see README.md).
package main

import (
	"fmt"
	"os"
	"time"

	"clawdet.local/standin_providers/standin"
)

// version is the real provider's version this stands in for, set with -ldflags "-X main.version=...".
var version = "1.2.1"

func main() {
	p := &standin.Provider{
		// The real provider sets no deadline; this one bounds a hung command unless customTimeouts say otherwise.
		Name: "command", Version: version, DefaultTimeout: time.Hour,
		Resources: map[string]standin.Resource{
			"command:remote:Command":      &standin.RemoteCommand{},
			"command:remote:CopyToRemote": &standin.CopyToRemote{},
		},
	}
	if err := standin.Serve(p); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
