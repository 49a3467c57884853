package main

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The interop suite's driver for the official Go SDK client: its
// SSEClientTransport for "sse", its StreamableClientTransport for
// "streamable", run in the test process.

func init() {
	interopClients = append(interopClients, interopClient{name: "go-sdk", run: runGoSDKClient})
}

// How long one request may take, how long a subscribe waits for its
// update, and a call for its final progress notification.
const (
	goRequestTimeout = 15 * time.Second
	goUpdateWait     = 10 * time.Second
	goProgressWait   = 2 * time.Second
)

// runGoSDKClient runs a script with the Go SDK client.
func runGoSDKClient(t *testing.T, url, transport, script string) []opResult {
	ops := loadScript(t, script)
	ctx, cancel := context.WithTimeout(t.Context(), driverTimeout)
	defer cancel()
	d := &goDriver{notices: newNotices()}
	client := mcp.NewClient(&mcp.Implementation{Name: "interop-go-sdk", Version: "1.0.0"}, &mcp.ClientOptions{
		CreateMessageHandler: answerSampling,
		ElicitationHandler:   answerElicitation,
		ResourceUpdatedHandler: func(_ context.Context, req *mcp.ResourceUpdatedNotificationRequest) {
			d.notices.add(updatedKey(req.Params.URI))
		},
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			token := fmt.Sprint(req.Params.ProgressToken)
			d.notices.add(progressKey(token))
			if req.Params.Total > 0 && req.Params.Progress >= req.Params.Total {
				d.notices.add(finalProgressKey(token))
			}
		},
	})
	client.AddRoots(&mcp.Root{URI: "file:///interop", Name: "interop"})
	var tr mcp.Transport = &mcp.SSEClientTransport{Endpoint: url}
	// Over SSE the client asks for 2025-11-25 and so initializes at once,
	// without server/discover: the Go SDK v1.8.0 SSE server answers a
	// discover that comes before its session is fully set up with its whole
	// version list, 2026-07-28 included, and the client then speaks that
	// revision over SSE, where the server's tools then cannot ask the
	// client anything (README, "Found on the way").
	// TestStatelessUpstreamGateway covers the client's discover through
	// the gateway.
	opts := &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"}
	if transport == "streamable" {
		tr, opts = &mcp.StreamableClientTransport{Endpoint: url}, nil
	}
	// The SSE transport ties its stream to the context it connects with.
	cs, err := client.Connect(ctx, tr, opts)
	if err != nil {
		return failAll(ops, fmt.Errorf("connecting to %s: %w", url, err))
	}
	defer cs.Close()
	d.cs = cs
	out := make([]opResult, len(ops))
	for i, op := range ops {
		out[i] = opResult{Op: op.label()}
		opCtx, cancelOp := context.WithTimeout(ctx, goRequestTimeout)
		result, err := d.perform(opCtx, i, op)
		cancelOp()
		if err != nil {
			out[i].Error = err.Error()
			continue
		}
		out[i].OK = true
		if out[i].Result, err = json.Marshal(result); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// goDriver is one run of a script with the Go SDK client.
type goDriver struct {
	cs      *mcp.ClientSession
	notices *notices
}

// The keys of the notifications a goDriver counts.
func updatedKey(uri string) string         { return "notifications/resources/updated for " + uri }
func progressKey(token string) string      { return "notifications/progress for " + token }
func finalProgressKey(token string) string { return "the final notifications/progress for " + token }

// perform does operation i of the script and returns its normalized
// result.
func (d *goDriver) perform(ctx context.Context, i int, op interopOp) (any, error) {
	switch op.Op {
	case "listTools":
		res, err := d.cs.ListTools(ctx, nil)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, tool := range res.Tools {
			names = append(names, tool.Name)
		}
		return sorted(names), nil
	case "callTool":
		return d.callTool(ctx, fmt.Sprintf("interop-%d", i), op)
	case "listResources":
		res, err := d.cs.ListResources(ctx, nil)
		if err != nil {
			return nil, err
		}
		var uris []string
		for _, r := range res.Resources {
			uris = append(uris, r.URI)
		}
		return sorted(uris), nil
	case "readResource":
		res, err := d.cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: op.URI})
		if err != nil {
			return nil, err
		}
		var contents []map[string]any
		for _, c := range res.Contents {
			item := map[string]any{"uri": c.URI, "mimeType": c.MIMEType}
			if c.Blob != nil {
				item["blob"] = base64.StdEncoding.EncodedLen(len(c.Blob))
			} else {
				item["text"] = c.Text
			}
			contents = append(contents, item)
		}
		return contents, nil
	case "subscribe":
		d.notices.forget(updatedKey(op.URI))
		if err := d.cs.Subscribe(ctx, &mcp.SubscribeParams{URI: op.URI}); err != nil {
			return nil, err
		}
		if err := d.notices.wait(ctx, updatedKey(op.URI), goUpdateWait); err != nil {
			return nil, err
		}
		return true, nil
	case "listPrompts":
		res, err := d.cs.ListPrompts(ctx, nil)
		if err != nil {
			return nil, err
		}
		var names []string
		for _, p := range res.Prompts {
			names = append(names, p.Name)
		}
		return sorted(names), nil
	case "getPrompt":
		args := map[string]string{}
		for k, v := range op.Arguments {
			args[k] = fmt.Sprint(v)
		}
		res, err := d.cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: op.Name, Arguments: args})
		if err != nil {
			return nil, err
		}
		var messages []map[string]any
		for _, m := range res.Messages {
			msg := map[string]any{"role": m.Role}
			if txt, ok := m.Content.(*mcp.TextContent); ok {
				msg["text"] = txt.Text
			}
			messages = append(messages, msg)
		}
		return messages, nil
	case "setLevel":
		return struct{}{}, d.cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: mcp.LoggingLevel(op.Level)})
	case "complete":
		var params mcp.CompleteParams
		if err := remarshalInto(map[string]any{"ref": op.Ref, "argument": op.Argument}, &params); err != nil {
			return nil, err
		}
		res, err := d.cs.Complete(ctx, &params)
		if err != nil {
			return nil, err
		}
		return res.Completion.Values, nil
	case "ping":
		return struct{}{}, d.cs.Ping(ctx, nil)
	}
	return nil, fmt.Errorf("unknown operation %q", op.Op)
}

// callTool calls a tool and normalizes its result: each content item's
// type and text, or its type and the length of what it carries on the
// wire; and, if asked, how many progress notifications came for token.
func (d *goDriver) callTool(ctx context.Context, token string, op interopOp) (any, error) {
	params := &mcp.CallToolParams{Name: op.Name}
	if op.Arguments != nil {
		// A nil map would go out as null; the SDK sends {} for none.
		params.Arguments = op.Arguments
	}
	if op.Progress {
		params.SetProgressToken(token)
	}
	res, err := d.cs.CallTool(ctx, params)
	if err != nil {
		return nil, err
	}
	if op.Progress {
		// The SDK hands notifications to their handler on a goroutine of
		// its own, so the last one may reach it after CallTool returned
		// the result that followed it on the wire. Every server of the
		// suite ends with progress == total: wait for that one. One that
		// never comes (it was lost) leaves the count short.
		_ = d.notices.wait(ctx, finalProgressKey(token), goProgressWait)
	}
	content := []map[string]any{}
	for _, c := range res.Content {
		var wire struct {
			Type     string `json:"type"`
			Text     string `json:"text"`
			Data     string `json:"data"`
			URI      string `json:"uri"`
			Resource struct {
				Text string `json:"text"`
				Blob string `json:"blob"`
			} `json:"resource"`
		}
		if err := remarshalInto(c, &wire); err != nil {
			return nil, err
		}
		if wire.Type == "text" {
			content = append(content, map[string]any{"type": "text", "text": wire.Text})
			continue
		}
		carried := cmp.Or(wire.Data, wire.Resource.Text, wire.Resource.Blob, wire.URI)
		content = append(content, map[string]any{"type": wire.Type, "length": len(carried)})
	}
	out := map[string]any{"content": content, "isError": res.IsError}
	if op.Progress {
		out["progress"] = d.notices.seen(progressKey(token))
	}
	return out, nil
}

// answerSampling answers sampling/createMessage as the README says.
func answerSampling(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
	text := ""
	if len(req.Params.Messages) > 0 {
		if txt, ok := req.Params.Messages[0].Content.(*mcp.TextContent); ok {
			text = txt.Text
		}
	}
	return &mcp.CreateMessageResult{Role: "assistant", Model: "interop", Content: &mcp.TextContent{Text: "sampled: " + text}}, nil
}

// answerElicitation accepts elicitation/create with every property of
// the requested schema filled in as the README says.
func answerElicitation(_ context.Context, req *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
	var schema struct {
		Properties map[string]map[string]any `json:"properties"`
	}
	if err := remarshalInto(req.Params.RequestedSchema, &schema); err != nil {
		return nil, fmt.Errorf("reading the requested schema: %w", err)
	}
	content := map[string]any{}
	for name, prop := range schema.Properties {
		content[name] = elicitValue(prop)
	}
	return &mcp.ElicitResult{Action: "accept", Content: content}, nil
}

// elicitValue is the answer to one property: its default, else its first
// choice, else a value of its type.
func elicitValue(prop map[string]any) any {
	if v, ok := prop["default"]; ok {
		return v
	}
	if v, ok := firstChoice(prop); ok {
		return v
	}
	switch prop["type"] {
	case "number", "integer":
		return 42
	case "boolean":
		return true
	case "array":
		items, _ := prop["items"].(map[string]any)
		if v, ok := firstChoice(items); ok {
			return []any{v}
		}
		return []any{}
	}
	return "interop"
}

// firstChoice is the first value of an enum, plain or titled (oneOf or
// anyOf of consts).
func firstChoice(schema map[string]any) (any, bool) {
	if enum, ok := schema["enum"].([]any); ok && len(enum) > 0 {
		return enum[0], true
	}
	for _, key := range []string{"oneOf", "anyOf"} {
		if alts, ok := schema[key].([]any); ok && len(alts) > 0 {
			if first, ok := alts[0].(map[string]any); ok {
				if v, ok := first["const"]; ok {
					return v, true
				}
			}
		}
	}
	return nil, false
}

// notices counts the notifications of a run by key, and lets an
// operation wait for one.
type notices struct {
	mu      sync.Mutex
	count   map[string]int
	arrived chan struct{} // closed and replaced on every notification
}

func newNotices() *notices {
	return &notices{count: map[string]int{}, arrived: make(chan struct{})}
}

func (n *notices) add(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.count[key]++
	close(n.arrived)
	n.arrived = make(chan struct{})
}

func (n *notices) seen(key string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.count[key]
}

func (n *notices) forget(key string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.count, key)
}

// wait returns once a notification with key arrived, or an error after d.
func (n *notices) wait(ctx context.Context, key string, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		n.mu.Lock()
		seen, arrived := n.count[key] > 0, n.arrived
		n.mu.Unlock()
		if seen {
			return nil
		}
		select {
		case <-arrived:
		case <-timer.C:
			return fmt.Errorf("no %s within %v", key, d)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// remarshalInto converts v to out through JSON.
func remarshalInto(v, out any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return json.Unmarshal(data, out)
}

// sorted returns s sorted, and an empty list for none.
func sorted(s []string) []string {
	if s == nil {
		return []string{}
	}
	slices.Sort(s)
	return s
}
