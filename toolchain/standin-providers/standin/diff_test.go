package standin

import (
	"testing"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

func TestDiffReplacesOnReplaceKeysAndUpdatesOtherwise(t *testing.T) {
	server := &HcloudServer{}
	state := Props{"name": "a", "image": "ubuntu-24.04", "labels": map[string]any{"k": "v"}, "status": "running"}
	inputs := Props{"name": "a", "image": "ubuntu-24.04", "labels": map[string]any{"k": "v"}}

	same := diff(server, state, inputs, Props{"name": "a", "image": "ubuntu-24.04", "labels": map[string]any{"k": "v"}}, nil)
	if same.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("equal inputs: got %v %v", same.Changes, same.Diffs)
	}

	labels := diff(server, state, inputs, Props{"name": "a", "image": "ubuntu-24.04", "labels": map[string]any{"k": "w"}}, nil)
	if labels.Changes != pulumirpc.DiffResponse_DIFF_SOME || len(labels.Replaces) != 0 ||
		labels.DetailedDiff["labels"].Kind != pulumirpc.PropertyDiff_UPDATE {
		t.Fatalf("labels: got %+v", labels)
	}

	image := diff(server, state, inputs, Props{"name": "a", "image": "debian-12", "labels": map[string]any{"k": "v"}}, nil)
	if len(image.Replaces) != 1 || image.Replaces[0] != "image" ||
		image.DetailedDiff["image"].Kind != pulumirpc.PropertyDiff_UPDATE_REPLACE {
		t.Fatalf("image: got %+v", image)
	}

	ignored := diff(server, state, inputs, Props{"name": "a", "image": "debian-12", "labels": map[string]any{"k": "v"}}, []string{"image"})
	if ignored.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("ignoreChanges: got %+v", ignored)
	}
}

func TestDiffTreatsUnknownAsChangeAndDropsRemovedInputs(t *testing.T) {
	record := &CloudflareDNSRecord{}
	state := Props{"zoneId": "z", "name": "a.example", "content": "127.0.0.1", "comment": "c"}
	inputs := Props{"zoneId": "z", "name": "a.example", "content": "127.0.0.1", "comment": "c"}

	unknown := diff(record, state, inputs, Props{"zoneId": "z", "name": "a.example", "content": Unknown, "comment": "c"}, nil)
	if unknown.DetailedDiff["content"].GetKind() != pulumirpc.PropertyDiff_UPDATE || len(unknown.Replaces) != 0 {
		t.Fatalf("unknown content: got %+v", unknown)
	}
	zone := diff(record, state, inputs, Props{"zoneId": Unknown, "name": "a.example", "content": "127.0.0.1", "comment": "c"}, nil)
	if len(zone.Replaces) != 1 || zone.Replaces[0] != "zoneId" {
		t.Fatalf("unknown zoneId must replace: got %+v", zone)
	}
	removed := diff(record, state, inputs, Props{"zoneId": "z", "name": "a.example", "content": "127.0.0.1"}, nil)
	if removed.DetailedDiff["comment"].GetKind() != pulumirpc.PropertyDiff_DELETE {
		t.Fatalf("removed comment: got %+v", removed)
	}
	// A computed output the program never set is not a difference.
	withOutputs := Props{"zoneId": "z", "name": "a.example", "content": "127.0.0.1", "proxiable": true}
	none := diff(record, withOutputs, Props{"zoneId": "z", "name": "a.example", "content": "127.0.0.1"},
		Props{"zoneId": "z", "name": "a.example", "content": "127.0.0.1"}, nil)
	if none.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("outputs only: got %+v", none)
	}
}

func TestFirewallRulesCompareAsSets(t *testing.T) {
	a := []any{map[string]any{"direction": "in", "protocol": "tcp", "port": "443", "sourceIps": []any{"::/0", "0.0.0.0/0"}}}
	b := []any{map[string]any{"direction": "in", "protocol": "tcp", "port": "443", "sourceIps": []any{"0.0.0.0/0", "::/0"}, "destinationIps": []any{}}}
	if !sameRules(a, b) {
		t.Fatal("rules differing only in address order must be the same")
	}
	c := []any{map[string]any{"direction": "in", "protocol": "tcp", "port": "80", "sourceIps": []any{"0.0.0.0/0"}}}
	if sameRules(a, c) {
		t.Fatal("different rules compared equal")
	}
}

// An optional, computed input the program does not set (a volume's serverId, read on import) is
// no change; an ordinary input it stopped setting still is.
func TestAnUnsetComputedInputIsNoChange(t *testing.T) {
	volume := &HcloudVolume{}
	imported := Props{"name": "v", "size": 10.0, "serverId": 7.0}
	got := diff(volume, imported, imported, Props{"name": "v", "size": 10.0}, nil)
	if got.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("serverId left to the API: got %+v", got)
	}
	got = diff(volume, imported, imported, Props{"size": 10.0, "serverId": 7.0}, nil)
	if got.Changes != pulumirpc.DiffResponse_DIFF_SOME || got.DetailedDiff["name"].Kind != pulumirpc.PropertyDiff_DELETE {
		t.Fatalf("a dropped name: got %+v", got)
	}
}
