package mcpsse

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"slices"
	"strings"
	"sync"

	"go.uber.org/zap"
)

// maxLearnedTools bounds the tools whose headers a store keeps.
const maxLearnedTools = 10000

// maxToolPages bounds the pages of tools/list the gateway reads itself.
const maxToolPages = 16

// toolHeaders holds, by tool name, the Mcp-Param-* headers that each
// tool's input schema asks for (x-mcp-header), as the upstream's tools/list
// results have them. The revision's lists do not vary by connection, so a
// store keeps one for every session.
type toolHeaders struct {
	mu     sync.Mutex
	byTool map[string][]paramHeader
}

// paramHeader is one argument mirrored into a header: the chain of
// property names that leads to it, and the header's name after Mcp-Param-.
type paramHeader struct {
	path []string
	name string
}

// setHeaders sets the revision's request headers for o on h: Mcp-Method,
// Mcp-Name for the methods that name something, and for tools/call the
// Mcp-Param-* headers of the tool's schema. Headers of those names that
// came with the client's request are dropped.
func (t *toolHeaders) setHeaders(h http.Header, o outgoing) {
	for k := range h {
		if strings.HasPrefix(http.CanonicalHeaderKey(k), headerParamPrefix) {
			h.Del(k)
		}
	}
	h.Set(headerMethod, o.method)
	h.Del(headerName)
	var key string
	switch o.method {
	case "tools/call", "prompts/get":
		key = "name"
	case "resources/read":
		key = "uri"
	default:
		return
	}
	var name string
	if json.Unmarshal(o.params[key], &name) != nil {
		return
	}
	h.Set(headerName, headerValue(name))
	if o.method != "tools/call" {
		return
	}
	t.mu.Lock()
	params := t.byTool[name]
	t.mu.Unlock()
	if len(params) == 0 {
		return
	}
	var args map[string]any
	dec := json.NewDecoder(bytes.NewReader(o.params["arguments"]))
	dec.UseNumber()
	if dec.Decode(&args) != nil {
		return
	}
	for _, p := range params {
		if v, ok := argumentValue(args, p.path); ok {
			h.Set(headerParamPrefix+p.name, headerValue(v))
		}
	}
}

// argumentValue returns the argument at path as the revision writes it in
// a header: a string as it is, an integer in decimal, a boolean as true or
// false; no value, null or another type gives none.
func argumentValue(args map[string]any, path []string) (string, bool) {
	var v any = args
	for _, key := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return "", false
		}
		v = obj[key]
	}
	switch x := v.(type) {
	case string:
		return x, true
	case bool:
		if x {
			return "true", true
		}
		return "false", true
	case json.Number:
		f, _, err := big.ParseFloat(string(x), 10, 256, big.ToNearestEven)
		if err != nil || !f.IsInt() {
			return "", false
		}
		return f.Text('f', 0), true
	}
	return "", false
}

// headerValue encodes v for a header as the revision has it: as it is if
// it is visible ASCII with inner spaces and tabs only, else in the Base64
// sentinel form, as is a value that looks like that form itself.
func headerValue(v string) string {
	plain := !strings.HasPrefix(v, "=?base64?") || !strings.HasSuffix(v, "?=")
	for i := 0; plain && i < len(v); i++ {
		c := v[i]
		plain = (c >= 0x20 && c <= 0x7e) || c == '\t'
	}
	if plain && v != "" && (strings.ContainsRune(" \t", rune(v[0])) || strings.ContainsRune(" \t", rune(v[len(v)-1]))) {
		plain = false
	}
	if plain {
		return v
	}
	return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(v)) + "?="
}

// learn records the headers of the tools in a tools/list result, and
// returns the response raw without the tools whose x-mcp-header
// annotations the revision makes invalid: a client must not offer them.
func (t *toolHeaders) learn(raw []byte, result json.RawMessage, logger *zap.Logger) []byte {
	var list map[string]json.RawMessage
	var tools []json.RawMessage
	if json.Unmarshal(result, &list) != nil || json.Unmarshal(list["tools"], &tools) != nil {
		return raw
	}
	kept := tools[:0:0]
	learned := make(map[string][]paramHeader, len(tools))
	for _, tool := range tools {
		var def struct {
			Name        string          `json:"name"`
			InputSchema json.RawMessage `json:"inputSchema"`
		}
		if json.Unmarshal(tool, &def) != nil {
			kept = append(kept, tool)
			continue
		}
		params, err := schemaHeaders(def.InputSchema)
		if err != nil {
			logger.Warn("leaving out a tool whose schema the protocol revision makes invalid",
				zap.String("tool", def.Name), zap.Error(err))
			continue
		}
		learned[def.Name] = params
		kept = append(kept, tool)
	}
	t.mu.Lock()
	if t.byTool == nil || len(t.byTool)+len(learned) > maxLearnedTools {
		t.byTool = make(map[string][]paramHeader)
	}
	for name, params := range learned {
		t.byTool[name] = params
	}
	t.mu.Unlock()
	if len(kept) == len(tools) {
		return raw
	}
	items := make([][]byte, len(kept))
	for i, tool := range kept {
		items[i] = tool
	}
	list["tools"] = append(append([]byte("["), bytes.Join(items, []byte(","))...), ']')
	var resp map[string]json.RawMessage
	if json.Unmarshal(raw, &resp) != nil {
		return raw
	}
	resp["result"] = encodeRaw(list)
	return encodeRaw(resp)
}

// schemaHeaders returns the headers an input schema's x-mcp-header
// annotations ask for, or why they are invalid: each must name a header
// token unique in the schema, on a property of a primitive type reached
// from the root through properties alone.
func schemaHeaders(schema json.RawMessage) ([]paramHeader, error) {
	if len(schema) == 0 {
		return nil, nil
	}
	var root any
	if err := json.Unmarshal(schema, &root); err != nil {
		return nil, fmt.Errorf("input schema: %v", err)
	}
	var out []paramHeader
	seen := make(map[string]bool)
	var walk func(node any, path []string, static bool) error
	walk = func(node any, path []string, static bool) error {
		switch n := node.(type) {
		case []any:
			for _, c := range n {
				if err := walk(c, nil, false); err != nil {
					return err
				}
			}
		case map[string]any:
			if v, ok := n["x-mcp-header"]; ok {
				name, _ := v.(string)
				switch {
				case !static || len(path) == 0:
					return errors.New("x-mcp-header outside the input schema's properties")
				case !isToken(name):
					return fmt.Errorf("x-mcp-header %q is not a header name", name)
				case seen[strings.ToLower(name)]:
					return fmt.Errorf("x-mcp-header %q is given twice", name)
				case !primitiveType(n["type"]):
					return fmt.Errorf("x-mcp-header %q is on a property that is not a string, integer or boolean", name)
				}
				seen[strings.ToLower(name)] = true
				out = append(out, paramHeader{path: slices.Clone(path), name: name})
			}
			for k, child := range n {
				if props, ok := child.(map[string]any); ok && k == "properties" && static {
					for name, prop := range props {
						if err := walk(prop, append(slices.Clip(path), name), true); err != nil {
							return err
						}
					}
					continue
				}
				if err := walk(child, nil, false); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(root, nil, true); err != nil {
		return nil, err
	}
	return out, nil
}

// primitiveType reports whether a schema's type is string, integer or
// boolean, maybe also null.
func primitiveType(t any) bool {
	ok := func(s any) bool { return s == "string" || s == "integer" || s == "boolean" }
	switch x := t.(type) {
	case string:
		return ok(x)
	case []any:
		found := false
		for _, e := range x {
			if e == "null" {
				continue
			}
			if !ok(e) {
				return false
			}
			found = true
		}
		return found
	}
	return false
}

// isToken reports whether s is an HTTP field name (RFC 9110's token).
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return false
		}
	}
	return true
}

// learnTools reads the upstream's tools/list itself, every page, to learn
// the tools' headers again.
func (s *session) learnTools(ctx context.Context, header http.Header, cfg *settings) error {
	st := s.stateless()
	var cursor json.RawMessage
	for range maxToolPages {
		params := map[string]json.RawMessage{}
		if cursor != nil {
			params["cursor"] = cursor
		}
		o := newOutgoing(st.newID(), "tools/list", params)
		resp, err := s.postStateless(ctx, o, s.requestMeta(), header.Clone(), cfg, nil)
		if err != nil {
			return err
		}
		a, err := s.readStatelessAnswer(ctx, resp, o.id, nil)
		resp.Body.Close()
		if err != nil {
			return err
		}
		s.store.tools.learn(a.msg.raw, a.result, s.store.logger())
		var page struct {
			NextCursor json.RawMessage `json:"nextCursor"`
		}
		if json.Unmarshal(a.result, &page) != nil || len(page.NextCursor) == 0 || string(page.NextCursor) == "null" {
			return nil
		}
		cursor = page.NextCursor
	}
	return nil
}
