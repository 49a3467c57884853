package mcpsse

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestDecodeEnvelope(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		fast bool // read without json.Unmarshal
	}{
		{`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"a","arguments":{"b":[1,"}",{"c":null}]}}}`, true},
		{` { "id" : "x\"y" , "jsonrpc" : "2.0" , "result" : null } `, true},
		{`{"jsonrpc":"2.0","id":{"a":[1,2]},"error":{"code":-1,"message":"m"}}`, true},
		{`{"jsonrpc":"2.0","method":"a","method":null,"id":1,"id":2.50}`, true},
		{`{"jsonrpc":"2.0","method":"x","params":"\u00e9\\\"","other":-1.5e3,"t":true,"f":false}`, true},
		{`{}`, true},
		// json.Unmarshal decodes these, or matches their names without
		// regard to case: they go to it.
		{`{"jsonrpc":"2.0","method":"tools\/call","id":1}`, false},
		{`{"jsonrpc":"2.0","Method":"tools/call","id":1}`, false},
		{`{"jsonrpc":"2.0","j\u0073onrpc":"1.0"}`, false},
		{`{"jſonrpc":"2.0","method":"a"}`, false},
		{`{"jsonrpc":"2.0","method":"caf` + "\xe9" + `"}`, false},
		{`{"jsonrpc":2,"method":"a"}`, false},
		{`{"jsonrpc":"2.0","method":7}`, false},
		{`{"jsonrpc":null,"method":"a"}`, false},
	} {
		var want envelope
		wantErr := json.Unmarshal([]byte(tc.raw), &want)
		got, err := decodeEnvelope([]byte(tc.raw))
		if (err != nil) != (wantErr != nil) || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: decoded %+v (%v), json.Unmarshal %+v (%v)", tc.raw, got, err, want, wantErr)
		}
		if fast := readEnvelope([]byte(tc.raw), new(envelope)); fast != tc.fast {
			t.Errorf("%s: read without json.Unmarshal: %v, want %v", tc.raw, fast, tc.fast)
		}
	}
}
