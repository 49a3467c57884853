package mcpsse

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestHeaderValue(t *testing.T) {
	// The revision's own examples.
	for value, want := range map[string]string{
		"us-west1":           "us-west1",
		"Hello, 世界":          "=?base64?SGVsbG8sIOS4lueVjA==?=",
		" padded ":           "=?base64?IHBhZGRlZCA=?=",
		"line1\nline2":       "=?base64?bGluZTEKbGluZTI=?=",
		"=?base64?literal?=": "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=",
		"inner space":        "inner space",
	} {
		if got := headerValue(value); got != want {
			t.Errorf("headerValue(%q) = %q, want %q", value, got, want)
		}
	}
}

func TestSchemaHeaders(t *testing.T) {
	valid := `{"type":"object","properties":{
		"region":{"type":"string","x-mcp-header":"Region"},
		"opts":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"},"on":{"type":["boolean","null"],"x-mcp-header":"On"}}},
		"list":{"type":"array","items":{"type":"string"}}}}`
	params, err := schemaHeaders(json.RawMessage(valid))
	if err != nil {
		t.Fatalf("a valid schema: %v", err)
	}
	got := map[string]string{}
	for _, p := range params {
		got[p.name] = strings.Join(p.path, ".")
	}
	if len(got) != 3 || got["Region"] != "region" || got["N"] != "opts.n" || got["On"] != "opts.on" {
		t.Errorf("headers %v, want Region at region, N at opts.n, On at opts.on", got)
	}
	for name, schema := range map[string]string{
		"under items":     `{"type":"object","properties":{"l":{"type":"array","items":{"type":"string","x-mcp-header":"L"}}}}`,
		"under anyOf":     `{"type":"object","anyOf":[{"properties":{"a":{"type":"string","x-mcp-header":"A"}}}]}`,
		"on the root":     `{"type":"object","x-mcp-header":"Root"}`,
		"twice":           `{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"X"},"b":{"type":"string","x-mcp-header":"x"}}}`,
		"on a number":     `{"type":"object","properties":{"a":{"type":"number","x-mcp-header":"A"}}}`,
		"not a token":     `{"type":"object","properties":{"a":{"type":"string","x-mcp-header":"A B"}}}`,
		"empty":           `{"type":"object","properties":{"a":{"type":"string","x-mcp-header":""}}}`,
		"under a $defs":   `{"type":"object","$defs":{"d":{"properties":{"a":{"type":"string","x-mcp-header":"A"}}}}}`,
		"not a string":    `{"type":"object","properties":{"a":{"type":"string","x-mcp-header":7}}}`,
		"on an object":    `{"type":"object","properties":{"a":{"type":"object","x-mcp-header":"A"}}}`,
		"no type at all ": `{"type":"object","properties":{"a":{"x-mcp-header":"A"}}}`,
	} {
		if _, err := schemaHeaders(json.RawMessage(schema)); err == nil {
			t.Errorf("x-mcp-header %s: accepted, want an error", name)
		}
	}
}

// TestSetHeaders checks the headers of a tools/call to a tool whose
// schema the store learned from tools/list.
func TestSetHeaders(t *testing.T) {
	var tools toolHeaders
	list := `{"tools":[
		{"name":"q","inputSchema":{"type":"object","properties":{
			"region":{"type":"string","x-mcp-header":"Region"},
			"n":{"type":"integer","x-mcp-header":"N"},
			"on":{"type":"boolean","x-mcp-header":"On"},
			"gone":{"type":"string","x-mcp-header":"Gone"},
			"null":{"type":["string","null"],"x-mcp-header":"Null"}}}},
		{"name":"bad","inputSchema":{"type":"object","properties":{"a":{"type":"number","x-mcp-header":"A"}}}}]}`
	raw := `{"jsonrpc":"2.0","id":1,"result":` + list + `}`
	kept := tools.learn([]byte(raw), json.RawMessage(list), zap.NewNop())
	if strings.Contains(string(kept), `"bad"`) || !strings.Contains(string(kept), `"q"`) {
		t.Errorf("tools/list as relayed: %s; want the tool with an invalid x-mcp-header left out, the other kept", kept)
	}

	h := http.Header{}
	h.Set("Mcp-Param-Injected", "from the client")
	o := outgoingOf(mustParse(t, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"q","arguments":{"region":"Zürich","n":42.0,"on":false,"null":null}}}`))
	tools.setHeaders(h, o)
	want := map[string]string{
		"Mcp-Method":       "tools/call",
		"Mcp-Name":         "q",
		"Mcp-Param-Region": "=?base64?WsO8cmljaA==?=",
		"Mcp-Param-N":      "42",
		"Mcp-Param-On":     "false",
	}
	for k, v := range want {
		if got := h.Get(k); got != v {
			t.Errorf("%s: %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Mcp-Param-Injected", "Mcp-Param-Gone", "Mcp-Param-Null"} {
		if _, ok := h[k]; ok {
			t.Errorf("%s set (%q); want it absent", k, h.Get(k))
		}
	}

	h = http.Header{}
	tools.setHeaders(h, outgoingOf(mustParse(t, `{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///ü"}}`)))
	if h.Get("Mcp-Method") != "resources/read" || h.Get("Mcp-Name") != headerValue("file:///ü") || !strings.HasPrefix(h.Get("Mcp-Name"), "=?base64?") {
		t.Errorf("resources/read headers %v: want its method and its URI encoded", h)
	}
	h = http.Header{}
	tools.setHeaders(h, outgoingOf(mustParse(t, `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`)))
	if h.Get("Mcp-Method") != "tools/list" || h.Get("Mcp-Name") != "" {
		t.Errorf("tools/list headers %v: want its method and no name", h)
	}
}

// TestOutgoingBody checks the _meta a client's request goes upstream with.
func TestOutgoingBody(t *testing.T) {
	initParams := []byte(`{"protocolVersion":"2025-06-18","capabilities":{"elicitation":{},"sampling":{}},"clientInfo":{"name":"c","version":"1"}}`)
	o := outgoingOf(mustParse(t, `{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"t","_meta":{"progressToken":7}}}`))
	var body struct {
		ID     string `json:"id"`
		Params struct {
			Name string                     `json:"name"`
			Meta map[string]json.RawMessage `json:"_meta"`
		} `json:"params"`
	}
	if err := json.Unmarshal(o.body(metaOf(initParams, "debug")), &body); err != nil {
		t.Fatal(err)
	}
	m := body.Params.Meta
	checks := map[string]string{
		"progressToken":        `7`,
		metaProtocolVersion:    `"2026-07-28"`,
		metaClientInfo:         `{"name":"c","version":"1"}`,
		metaLogLevel:           `"debug"`,
		metaClientCapabilities: `{"elicitation":{"form":{}},"sampling":{}}`,
	}
	for k, v := range checks {
		if string(m[k]) != v {
			t.Errorf("_meta[%s] = %s, want %s", k, m[k], v)
		}
	}
	if body.ID != "x" || body.Params.Name != "t" {
		t.Errorf("id %q, name %q: want the client's", body.ID, body.Params.Name)
	}
}

func TestInitializeAnswer(t *testing.T) {
	d := &discovery{stateless: true, capabilities: json.RawMessage(`{"tools":{}}`), serverInfo: json.RawMessage(`{"name":"s","version":"2"}`), instructions: "use it"}
	for asked, want := range map[string]string{"2024-11-05": "2024-11-05", "2025-06-18": "2025-06-18", "2026-07-28": "2025-11-25", "": "2025-11-25"} {
		var r struct {
			ID     int `json:"id"`
			Result struct {
				ProtocolVersion string          `json:"protocolVersion"`
				Capabilities    json.RawMessage `json:"capabilities"`
				ServerInfo      json.RawMessage `json:"serverInfo"`
				Instructions    string          `json:"instructions"`
			} `json:"result"`
		}
		raw := initializeAnswer(json.RawMessage(`5`), []byte(`{"protocolVersion":"`+asked+`"}`), d)
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatal(err)
		}
		if r.ID != 5 || r.Result.ProtocolVersion != want || string(r.Result.Capabilities) != `{"tools":{}}` ||
			string(r.Result.ServerInfo) != `{"name":"s","version":"2"}` || r.Result.Instructions != "use it" {
			t.Errorf("client asks for %q: %s; want version %s and the upstream's capabilities, info and instructions", asked, raw, want)
		}
	}
}

func TestAsksInput(t *testing.T) {
	ir, ok := asksInput(json.RawMessage(`{"resultType":"input_required","inputRequests":{"k":{"method":"roots/list"}},"requestState":"s\u00e9"}`))
	if !ok || len(ir.InputRequests) != 1 || string(ir.RequestState) != `"s\u00e9"` {
		t.Errorf("input_required: %+v, %v; want its requests and its state byte for byte", ir, ok)
	}
	for _, result := range []string{`{"content":[]}`, `{"resultType":"complete"}`, ``} {
		if _, ok := asksInput(json.RawMessage(result)); ok {
			t.Errorf("%s read as input_required", result)
		}
	}
}

func mustParse(t *testing.T, raw string) message {
	t.Helper()
	m, err := parseMessage([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAsLegacy(t *testing.T) {
	for raw, want := range map[string]string{
		// A 2026-07-28 result: its protocol fields go, the rest stays as it is.
		`{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"a<b"}],"resultType":"complete","ttlMs":0,"cacheScope":"public","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"s"},"app":1}}}`: `{"id":1,"jsonrpc":"2.0","result":{"_meta":{"app":1},"content":[{"type":"text","text":"a<b"}]}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"resultType":"complete","_meta":{"io.modelcontextprotocol/serverInfo":{"name":"s"}}}}`:                                                                                  `{"id":1,"jsonrpc":"2.0","result":{}}`,
		`{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"x://y","_meta":{"io.modelcontextprotocol/subscriptionId":"caddy-mcp-sse-3"}}}`:                                               `{"jsonrpc":"2.0","method":"notifications/resources/updated","params":{"uri":"x://y"}}`,
		// Nothing of the revision's: byte for byte.
		`{"jsonrpc":"2.0","id":1,"result":{"z":1,"a":2}}`:                        `{"jsonrpc":"2.0","id":1,"result":{"z":1,"a":2}}`,
		`{"jsonrpc":"2.0","id":1,"result":{"text":"resultType is a word here"}}`: `{"jsonrpc":"2.0","id":1,"result":{"text":"resultType is a word here"}}`,
	} {
		if got := string(asLegacy([]byte(raw))); got != want {
			t.Errorf("asLegacy(%s)\n = %s\nwant %s", raw, got, want)
		}
	}
}

func TestValidateUpstreamProtocol(t *testing.T) {
	for value, ok := range map[string]bool{"auto": true, "2026-07-28": true, "2025-11-25": true, "2025-06-18": false, "AUTO": false} {
		err := (&Handler{Upstream: "http://a", UpstreamProtocol: value}).Validate()
		if (err == nil) != ok {
			t.Errorf("upstream_protocol %q: %v, want accepted %v", value, err, ok)
		}
	}
}

func TestEncodeRaw(t *testing.T) {
	got := string(encodeRaw(map[string]json.RawMessage{"b": json.RawMessage(`"<&>"`), "a\"\\\n": json.RawMessage(`{"x":[1,2]}`)}))
	want := `{"a\"\\\u000a":{"x":[1,2]},"b":"<&>"}`
	if got != want {
		t.Errorf("encodeRaw: %s, want %s", got, want)
	}
	var back map[string]any
	if err := json.Unmarshal([]byte(got), &back); err != nil || back["a\"\\\n"] == nil {
		t.Errorf("encodeRaw's output does not read back: %v, %v", back, err)
	}
}
