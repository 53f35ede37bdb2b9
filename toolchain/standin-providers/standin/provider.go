package standin

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/diag"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Provider is a resource provider plugin serving a fixed set of resource types over gRPC.
type Provider struct {
	pulumirpc.UnimplementedResourceProviderServer

	Name      string              // "hcloud", "cloudflare"
	Version   string              // the pinned version of the real provider this stands in for
	Config    Config              // configured by Configure (nil: the provider has no settings)
	Resources map[string]Resource // by type token, e.g. "hcloud:index/server:Server"
	// DefaultTimeout bounds Create/Update/Delete when the program sets no customTimeouts.
	DefaultTimeout time.Duration

	host *provider.HostClient
}

// Serve runs the plugin (the engine starts it and talks to it over gRPC).
func Serve(p *Provider) error {
	return provider.Main(p.Name, func(host *provider.HostClient) (pulumirpc.ResourceProviderServer, error) {
		p.host = host
		return p, nil
	})
}

var (
	inOpts  = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true, SkipNulls: true}
	outOpts = plugin.MarshalOptions{KeepUnknowns: true, KeepSecrets: true}
)

func (p *Provider) unmarshal(label string, s *structpb.Struct) (resource.PropertyMap, error) {
	opts := inOpts
	opts.Label = p.Name + "." + label
	pm, err := plugin.UnmarshalProperties(s, opts)
	if err != nil {
		return nil, err
	}
	return pm, nil
}

func (p *Provider) marshal(label string, pm resource.PropertyMap) (*structpb.Struct, error) {
	opts := outOpts
	opts.Label = p.Name + "." + label
	return plugin.MarshalProperties(pm, opts)
}

func (p *Provider) resource(urn string) (Resource, string, error) {
	u := resource.URN(urn)
	token := string(u.Type())
	r, ok := p.Resources[token]
	if !ok {
		known := make([]string, 0, len(p.Resources))
		for k := range p.Resources {
			known = append(known, k)
		}
		sort.Strings(known)
		return nil, "", status.Errorf(codes.InvalidArgument,
			"the offline stand-in %s provider does not implement %s (only %s); install the real "+
				"plugin (pulumi plugin install resource %s %s)", p.Name, token, strings.Join(known, ", "), p.Name, p.Version)
	}
	return r, u.Name(), nil
}

// withLog sends progress lines as status messages (shown while the step runs) and retries as
// info diagnostics (kept in the update's log).
func (p *Provider) withLog(ctx context.Context, urn string) context.Context {
	return WithLogger(ctx, func(msg string, persistent bool) {
		if p.host == nil {
			return
		}
		if persistent {
			_ = p.host.Log(ctx, diag.Info, resource.URN(urn), msg)
		} else {
			_ = p.host.LogStatus(ctx, diag.Info, resource.URN(urn), msg)
		}
	})
}

func (p *Provider) deadline(ctx context.Context, timeout float64) (context.Context, context.CancelFunc) {
	d := p.DefaultTimeout
	if timeout > 0 {
		d = time.Duration(timeout * float64(time.Second))
	}
	if d <= 0 {
		d = 20 * time.Minute
	}
	return context.WithTimeout(ctx, d)
}

// --- plugin metadata and provider configuration ---------------------------------------------

func (p *Provider) GetPluginInfo(context.Context, *emptypb.Empty) (*pulumirpc.PluginInfo, error) {
	return &pulumirpc.PluginInfo{Version: p.Version}, nil
}

func (p *Provider) GetSchema(context.Context, *pulumirpc.GetSchemaRequest) (*pulumirpc.GetSchemaResponse, error) {
	resources := map[string]any{}
	for token := range p.Resources {
		resources[token] = map[string]any{"description": "offline stand-in", "properties": map[string]any{}}
	}
	schema, err := json.Marshal(map[string]any{
		"name": p.Name, "version": p.Version,
		"description": "Clawdet's offline stand-in for the " + p.Name + " provider",
		"resources":   resources,
	})
	if err != nil {
		return nil, err
	}
	return &pulumirpc.GetSchemaResponse{Schema: string(schema)}, nil
}

func (p *Provider) CheckConfig(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	return &pulumirpc.CheckResponse{Inputs: req.GetNews()}, nil
}

func (p *Provider) DiffConfig(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	olds, err := p.unmarshal("olds", req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := p.unmarshal("news", req.GetNews())
	if err != nil {
		return nil, err
	}
	o, n := ToPlain(olds), ToPlain(news)
	var diffs []string
	for _, k := range unionKeys(o, n) {
		if k == "version" || strings.HasPrefix(k, "__") {
			continue
		}
		if !Equal(o[k], n[k]) {
			diffs = append(diffs, k)
		}
	}
	if len(diffs) == 0 {
		return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_NONE}, nil
	}
	return &pulumirpc.DiffResponse{Changes: pulumirpc.DiffResponse_DIFF_SOME, Diffs: diffs}, nil
}

func (p *Provider) Configure(_ context.Context, req *pulumirpc.ConfigureRequest) (*pulumirpc.ConfigureResponse, error) {
	inputs := Props{}
	if req.GetArgs() != nil {
		pm, err := p.unmarshal("config", req.GetArgs())
		if err != nil {
			return nil, err
		}
		inputs = ToPlain(pm)
	} else {
		// Older engines: "hcloud:config:token" -> "token".
		for k, v := range req.GetVariables() {
			inputs[k[strings.LastIndex(k, ":")+1:]] = v
		}
	}
	if p.Config == nil {
		return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true}, nil
	}
	if err := p.Config.Configure(inputs); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pulumirpc.ConfigureResponse{AcceptSecrets: true, SupportsPreview: true}, nil
}

func (p *Provider) Cancel(context.Context, *emptypb.Empty) (*emptypb.Empty, error) {
	return &emptypb.Empty{}, nil
}

// --- resources ----------------------------------------------------------------------------

func (p *Provider) Check(_ context.Context, req *pulumirpc.CheckRequest) (*pulumirpc.CheckResponse, error) {
	r, name, err := p.resource(req.GetUrn())
	if err != nil {
		return nil, err
	}
	news, err := p.unmarshal("news", req.GetNews())
	if err != nil {
		return nil, err
	}
	// Keep an auto-generated name stable across updates.
	if olds, err := p.unmarshal("olds", req.GetOlds()); err == nil {
		if _, set := news["name"]; !set && olds["name"].IsString() {
			news["name"] = olds["name"]
		}
	}
	checked, failures := r.Check(name, ToPlain(news))
	out := FromPlain(checked, secretsOf(r, news))
	inputs, err := p.marshal("inputs", out)
	if err != nil {
		return nil, err
	}
	resp := &pulumirpc.CheckResponse{Inputs: inputs}
	for _, f := range failures {
		resp.Failures = append(resp.Failures, &pulumirpc.CheckFailure{Property: f.Property, Reason: f.Reason})
	}
	return resp, nil
}

func (p *Provider) Diff(_ context.Context, req *pulumirpc.DiffRequest) (*pulumirpc.DiffResponse, error) {
	r, _, err := p.resource(req.GetUrn())
	if err != nil {
		return nil, err
	}
	olds, err := p.unmarshal("olds", req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := p.unmarshal("news", req.GetNews())
	if err != nil {
		return nil, err
	}
	oldInputs := olds
	if req.GetOldInputs() != nil {
		if oldInputs, err = p.unmarshal("oldInputs", req.GetOldInputs()); err != nil {
			return nil, err
		}
	}
	return diff(r, ToPlain(olds), ToPlain(oldInputs), ToPlain(news), req.GetIgnoreChanges()), nil
}

func (p *Provider) Create(ctx context.Context, req *pulumirpc.CreateRequest) (*pulumirpc.CreateResponse, error) {
	r, name, err := p.resource(req.GetUrn())
	if err != nil {
		return nil, err
	}
	news, err := p.unmarshal("news", req.GetProperties())
	if err != nil {
		return nil, err
	}
	inputs := ToPlain(news)
	if req.GetPreview() {
		outs := Props{}
		for k, v := range inputs {
			outs[k] = v
		}
		for _, k := range r.Computed() {
			if _, set := outs[k]; !set {
				outs[k] = Unknown
			}
		}
		props, err := p.marshal("preview", FromPlain(outs, secretsOf(r, news)))
		return &pulumirpc.CreateResponse{Properties: props}, err
	}
	ctx, cancel := p.deadline(p.withLog(withResourceName(ctx, name), req.GetUrn()), req.GetTimeout())
	defer cancel()
	id, outs, err := r.Create(ctx, inputs)
	if err != nil && id == "" {
		return nil, err
	}
	props, merr := p.marshal("outputs", FromPlain(outs, secretsOf(r, news)))
	if merr != nil {
		return nil, merr
	}
	if err != nil {
		// Created but not finished: tell the engine so it records the resource (and a later
		// `up` continues from there) instead of leaking it.
		return nil, partialFailure(id, props, news, err)
	}
	return &pulumirpc.CreateResponse{Id: id, Properties: props}, nil
}

func (p *Provider) Read(ctx context.Context, req *pulumirpc.ReadRequest) (*pulumirpc.ReadResponse, error) {
	r, _, err := p.resource(req.GetUrn())
	if err != nil {
		return nil, err
	}
	state, err := p.unmarshal("state", req.GetProperties())
	if err != nil {
		return nil, err
	}
	inputs, err := p.unmarshal("inputs", req.GetInputs())
	if err != nil {
		return nil, err
	}
	ctx, cancel := p.deadline(p.withLog(ctx, req.GetUrn()), 0)
	defer cancel()
	outs, err := r.Read(ctx, req.GetId(), ToPlain(state))
	if err != nil {
		return nil, err
	}
	if outs == nil {
		return &pulumirpc.ReadResponse{}, nil // gone: the engine drops it from the state
	}
	secret := secretsOf(r, state, inputs)
	props, err := p.marshal("outputs", FromPlain(outs, secret))
	if err != nil {
		return nil, err
	}
	// The inputs as they are live: those the program had set (or every input key on import).
	plainInputs := ToPlain(inputs)
	liveInputs := Props{}
	for _, k := range r.InputKeys() {
		_, had := plainInputs[k]
		if v, ok := outs[k]; ok && v != nil && (had || len(plainInputs) == 0) {
			liveInputs[k] = v
		}
	}
	ins, err := p.marshal("inputs", FromPlain(liveInputs, secret))
	if err != nil {
		return nil, err
	}
	return &pulumirpc.ReadResponse{Id: req.GetId(), Properties: props, Inputs: ins}, nil
}

func (p *Provider) Update(ctx context.Context, req *pulumirpc.UpdateRequest) (*pulumirpc.UpdateResponse, error) {
	r, _, err := p.resource(req.GetUrn())
	if err != nil {
		return nil, err
	}
	olds, err := p.unmarshal("olds", req.GetOlds())
	if err != nil {
		return nil, err
	}
	news, err := p.unmarshal("news", req.GetNews())
	if err != nil {
		return nil, err
	}
	o, n := ToPlain(olds), ToPlain(news)
	secret := secretsOf(r, news)
	if req.GetPreview() {
		outs := Props{}
		for k, v := range o {
			outs[k] = v
		}
		for k, v := range n {
			outs[k] = v
		}
		props, err := p.marshal("preview", FromPlain(outs, secret))
		return &pulumirpc.UpdateResponse{Properties: props}, err
	}
	ctx, cancel := p.deadline(p.withLog(ctx, req.GetUrn()), req.GetTimeout())
	defer cancel()
	outs, err := r.Update(ctx, req.GetId(), o, n)
	if err != nil {
		return nil, err
	}
	props, err := p.marshal("outputs", FromPlain(outs, secret))
	if err != nil {
		return nil, err
	}
	return &pulumirpc.UpdateResponse{Properties: props}, nil
}

func (p *Provider) Delete(ctx context.Context, req *pulumirpc.DeleteRequest) (*emptypb.Empty, error) {
	r, _, err := p.resource(req.GetUrn())
	if err != nil {
		return nil, err
	}
	state, err := p.unmarshal("state", req.GetProperties())
	if err != nil {
		return nil, err
	}
	ctx, cancel := p.deadline(p.withLog(ctx, req.GetUrn()), req.GetTimeout())
	defer cancel()
	if err := r.Delete(ctx, req.GetId(), ToPlain(state)); err != nil && !IsNotFound(err) {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// secretsOf lists the top-level keys to mark secret in r's properties: those secret in any of pms,
// and those r always keeps secret.
func secretsOf(r Resource, pms ...resource.PropertyMap) map[string]bool {
	secret := map[string]bool{}
	for _, pm := range pms {
		for k := range secretKeys(pm) {
			secret[k] = true
		}
	}
	if always, ok := r.(AlwaysSecret); ok {
		for _, k := range always.SecretKeys() {
			secret[k] = true
		}
	}
	return secret
}

// partialFailure reports a resource that was created but did not finish initialising.
func partialFailure(id string, props *structpb.Struct, news resource.PropertyMap, cause error) error {
	inputs, _ := plugin.MarshalProperties(news, outOpts)
	detail := &pulumirpc.ErrorResourceInitFailed{
		Id: id, Properties: props, Inputs: inputs, Reasons: []string{cause.Error()},
	}
	st, err := status.New(codes.Unknown, cause.Error()).WithDetails(detail)
	if err != nil {
		return fmt.Errorf("%w (resource %s was created)", cause, id)
	}
	return st.Err()
}

func unionKeys(a, b Props) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range []Props{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}
