package standin

import (
	"slices"

	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
)

// diff compares the new inputs with the current state (the outputs, which a refresh brought up
// to date) on the resource's input keys. An input the program stopped setting is a change only if
// the old inputs had it, and not even then for an optional, computed key (a volume's serverId read
// on import, say). A changed or unknown ReplaceKey replaces the resource.
func diff(r Resource, state, oldInputs, news Props, ignore []string) *pulumirpc.DiffResponse {
	resp := &pulumirpc.DiffResponse{HasDetailedDiff: true, DetailedDiff: map[string]*pulumirpc.PropertyDiff{}}
	replaceKeys := r.ReplaceKeys()
	for _, k := range r.InputKeys() {
		if slices.Contains(ignore, k) {
			continue
		}
		newV, inNew := news[k]
		_, inOldInputs := oldInputs[k]
		oldV, inState := state[k]
		if !inNew && !inOldInputs {
			continue
		}
		var kind pulumirpc.PropertyDiff_Kind
		switch {
		case inNew && ContainsUnknown(newV):
			kind = pulumirpc.PropertyDiff_UPDATE
		case !inNew:
			if Equal(oldV, nil) || slices.Contains(r.Computed(), k) {
				continue // optional and computed: a program that does not set it has no opinion
			}
			kind = pulumirpc.PropertyDiff_DELETE
		case !inState || Equal(oldV, nil):
			if Equal(newV, nil) {
				continue
			}
			kind = pulumirpc.PropertyDiff_ADD
		case Equal(oldV, newV):
			continue
		default:
			kind = pulumirpc.PropertyDiff_UPDATE
		}
		if slices.Contains(replaceKeys, k) {
			kind++ // ADD -> ADD_REPLACE, DELETE -> DELETE_REPLACE, UPDATE -> UPDATE_REPLACE
			resp.Replaces = append(resp.Replaces, k)
		}
		resp.Diffs = append(resp.Diffs, k)
		resp.DetailedDiff[k] = &pulumirpc.PropertyDiff{Kind: kind, InputDiff: true}
	}
	if len(resp.Diffs) == 0 {
		resp.Changes = pulumirpc.DiffResponse_DIFF_NONE
	} else {
		resp.Changes = pulumirpc.DiffResponse_DIFF_SOME
	}
	return resp
}
