package standin

import (
	"crypto/rand"
	"encoding/hex"
)

// autoName is Pulumi's auto-naming: the logical name plus a random suffix.
func autoName(urnName string) string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return urnName + "-" + hex.EncodeToString(b)[:7]
}
