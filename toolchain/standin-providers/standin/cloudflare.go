package standin

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// Cloudflare holds the configured Cloudflare API client shared by the cloudflare resources.
type Cloudflare struct {
	API     *API
	Version string

	mu        sync.Mutex
	zoneNames map[string]string
}

// Configure reads apiToken and baseUrl (stack config cloudflare:*), else CLOUDFLARE_API_TOKEN
// and CLOUDFLARE_BASE_URL, like the real provider. Only API tokens are supported.
func (c *Cloudflare) Configure(inputs Props) error {
	token := firstNonEmpty(Str(inputs, "apiToken"), os.Getenv("CLOUDFLARE_API_TOKEN"))
	base := firstNonEmpty(Str(inputs, "baseUrl"), os.Getenv("CLOUDFLARE_BASE_URL"), "https://api.cloudflare.com/client/v4")
	if token == "" {
		if Str(inputs, "apiKey") != "" || os.Getenv("CLOUDFLARE_API_KEY") != "" {
			return fmt.Errorf("cloudflare: the offline stand-in provider supports API tokens only " +
				"(cloudflare:apiToken or CLOUDFLARE_API_TOKEN), not a global API key")
		}
		return fmt.Errorf("cloudflare: no API token: set the stack config cloudflare:apiToken (secret) or CLOUDFLARE_API_TOKEN")
	}
	c.API = &API{
		Service: "cloudflare", BaseURL: strings.TrimRight(base, "/"), Token: token,
		UserAgent:      "clawdet-standin-pulumi-cloudflare/" + c.Version,
		RequestTimeout: 30 * time.Second, MaxAttempts: 5, HTTP: &http.Client{},
	}
	c.zoneNames = map[string]string{}
	return nil
}

func (c *Cloudflare) ready() error {
	if c.API == nil {
		return fmt.Errorf("cloudflare: the provider is not configured")
	}
	return nil
}

// zoneName is the zone's domain (cached), used to compare a relative record name with the FQDN
// the API returns.
func (c *Cloudflare) zoneName(ctx context.Context, zoneID string) (string, error) {
	c.mu.Lock()
	name, ok := c.zoneNames[zoneID]
	c.mu.Unlock()
	if ok {
		return name, nil
	}
	var resp struct {
		Result struct {
			Name string `json:"name"`
		} `json:"result"`
	}
	if err := c.API.Do(ctx, http.MethodGet, "/zones/"+url.PathEscape(zoneID), nil, &resp); err != nil {
		return "", err
	}
	c.mu.Lock()
	c.zoneNames[zoneID] = resp.Result.Name
	c.mu.Unlock()
	return resp.Result.Name, nil
}
