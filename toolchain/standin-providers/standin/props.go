package standin

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
)

// Props is a property map as plain Go values: string, float64, bool, []any, map[string]any, nil,
// *resource.Asset, *resource.Archive, or Unknown (a value not known during a preview). Secrets are
// unwrapped; which top-level keys were secret is tracked separately (see secretKeys) and re-applied
// on the way out.
type Props = map[string]any

type unknownValue struct{}

// Unknown marks a value that is not known yet (a preview with inputs computed by other resources).
var Unknown = unknownValue{}

// IsUnknown reports whether v is Unknown.
func IsUnknown(v any) bool { _, ok := v.(unknownValue); return ok }

// ContainsUnknown reports whether v or anything inside it is Unknown.
func ContainsUnknown(v any) bool {
	switch t := v.(type) {
	case unknownValue:
		return true
	case []any:
		for _, e := range t {
			if ContainsUnknown(e) {
				return true
			}
		}
	case map[string]any:
		for _, e := range t {
			if ContainsUnknown(e) {
				return true
			}
		}
	}
	return false
}

// ToPlain converts an engine property map to Props.
func ToPlain(pm resource.PropertyMap) Props {
	out := Props{}
	for k, v := range pm {
		out[string(k)] = plainValue(v)
	}
	return out
}

func plainValue(v resource.PropertyValue) any {
	switch {
	case v.IsComputed():
		return Unknown
	case v.IsOutput():
		o := v.OutputValue()
		if !o.Known {
			return Unknown
		}
		return plainValue(o.Element)
	case v.IsSecret():
		return plainValue(v.SecretValue().Element)
	case v.IsNull():
		return nil
	case v.IsString():
		return v.StringValue()
	case v.IsNumber():
		return v.NumberValue()
	case v.IsBool():
		return v.BoolValue()
	case v.IsArray():
		arr := v.ArrayValue()
		out := make([]any, len(arr))
		for i, e := range arr {
			out[i] = plainValue(e)
		}
		return out
	case v.IsObject():
		return ToPlain(v.ObjectValue())
	case v.IsAsset():
		return v.AssetValue()
	case v.IsArchive():
		return v.ArchiveValue()
	}
	return v.V
}

// FromPlain converts Props back to an engine property map, marking the keys in secret as secrets.
func FromPlain(p Props, secret map[string]bool) resource.PropertyMap {
	out := resource.PropertyMap{}
	for k, v := range p {
		pv := propertyValue(v)
		if secret[k] && !pv.IsNull() && !pv.IsSecret() {
			pv = resource.MakeSecret(pv)
		}
		out[resource.PropertyKey(k)] = pv
	}
	return out
}

func propertyValue(v any) resource.PropertyValue {
	switch t := v.(type) {
	case unknownValue:
		return resource.MakeComputed(resource.NewStringProperty(""))
	case nil:
		return resource.NewNullProperty()
	case string:
		return resource.NewStringProperty(t)
	case float64:
		return resource.NewNumberProperty(t)
	case int:
		return resource.NewNumberProperty(float64(t))
	case int64:
		return resource.NewNumberProperty(float64(t))
	case bool:
		return resource.NewBoolProperty(t)
	case []string:
		arr := make([]resource.PropertyValue, len(t))
		for i, e := range t {
			arr[i] = resource.NewStringProperty(e)
		}
		return resource.NewArrayProperty(arr)
	case []any:
		arr := make([]resource.PropertyValue, len(t))
		for i, e := range t {
			arr[i] = propertyValue(e)
		}
		return resource.NewArrayProperty(arr)
	case map[string]string:
		m := resource.PropertyMap{}
		for k, e := range t {
			m[resource.PropertyKey(k)] = resource.NewStringProperty(e)
		}
		return resource.NewObjectProperty(m)
	case map[string]any:
		return resource.NewObjectProperty(FromPlain(t, nil))
	case *resource.Asset:
		return resource.NewAssetProperty(t)
	case resource.Asset:
		return resource.NewAssetProperty(&t)
	case *resource.Archive:
		return resource.NewArchiveProperty(t)
	case resource.Archive:
		return resource.NewArchiveProperty(&t)
	}
	panic(fmt.Sprintf("standin: cannot convert %T to a property value", v))
}

// secretKeys lists the top-level keys of pm whose values are or contain secrets.
func secretKeys(pm resource.PropertyMap) map[string]bool {
	out := map[string]bool{}
	for k, v := range pm {
		if v.ContainsSecrets() {
			out[string(k)] = true
		}
	}
	return out
}

// --- typed getters (a missing key or a wrong type gives the zero value) -----------------------

func Str(p Props, key string) string { s, _ := p[key].(string); return s }

func Bool(p Props, key string, def bool) bool {
	if b, ok := p[key].(bool); ok {
		return b
	}
	if s, ok := p[key].(string); ok {
		if b, err := strconv.ParseBool(s); err == nil {
			return b
		}
	}
	return def
}

func Num(p Props, key string) (float64, bool) {
	switch t := p[key].(type) {
	case float64:
		return t, true
	case string:
		f, err := strconv.ParseFloat(t, 64)
		return f, err == nil
	}
	return 0, false
}

func List(p Props, key string) []any { l, _ := p[key].([]any); return l }

func Object(v any) Props { m, _ := v.(map[string]any); return m }

// StringMap returns a map of strings (labels); non-string values are formatted.
func StringMap(p Props, key string) map[string]string {
	out := map[string]string{}
	for k, v := range Object(p[key]) {
		if s, ok := v.(string); ok {
			out[k] = s
		} else {
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}

func Strings(v any) []string {
	l, _ := v.([]any)
	out := make([]string, 0, len(l))
	for _, e := range l {
		switch t := e.(type) {
		case string:
			out = append(out, t)
		case float64:
			out = append(out, strconv.FormatFloat(t, 'f', -1, 64))
		}
	}
	return out
}

// AnyStrings converts []string to []any (for outputs).
func AnyStrings(s []string) []any {
	out := make([]any, len(s))
	for i, e := range s {
		out[i] = e
	}
	return out
}

func AnyMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// Equal compares two plain values; nil, an empty list and an empty map are all "nothing". Assets
// and archives are equal when their contents hash the same, wherever the contents come from.
func Equal(a, b any) bool {
	if isEmpty(a) && isEmpty(b) {
		return true
	}
	return sameValue(a, b)
}

func sameValue(a, b any) bool {
	a, b = byPointer(a), byPointer(b)
	switch x := a.(type) {
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !sameValue(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, v := range x {
			w, found := y[k]
			if !found || !sameValue(v, w) {
				return false
			}
		}
		return true
	case *resource.Asset:
		y, ok := b.(*resource.Asset)
		return ok && x.Equals(y)
	case *resource.Archive:
		y, ok := b.(*resource.Archive)
		return ok && x.Equals(y)
	}
	return reflect.DeepEqual(a, b)
}

// byPointer turns an asset or archive held by value into a pointer, the form ToPlain gives.
func byPointer(v any) any {
	switch t := v.(type) {
	case resource.Asset:
		return &t
	case resource.Archive:
		return &t
	}
	return v
}

func isEmpty(v any) bool {
	switch t := v.(type) {
	case nil:
		return true
	case []any:
		return len(t) == 0
	case map[string]any:
		return len(t) == 0
	}
	return false
}

// SameStringSet reports whether a and b hold the same strings in any order.
func SameStringSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := append([]string(nil), a...), append([]string(nil), b...)
	sort.Strings(x)
	sort.Strings(y)
	return reflect.DeepEqual(x, y)
}
