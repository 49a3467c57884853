package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestAdaptExample pins the JSON that Caddyfile.example adapts to, so that
// every Caddyfile subdirective keeps its JSON key. Run with -update to
// rewrite testdata/Caddyfile.example.json after a deliberate change.
func TestAdaptExample(t *testing.T) {
	input, err := os.ReadFile("../../Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	adapted, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(input, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatalf("adapting Caddyfile.example: %v", err)
	}
	if len(warnings) > 0 {
		t.Errorf("warnings: %v", warnings)
	}
	var got bytes.Buffer
	if err := json.Indent(&got, adapted, "", "\t"); err != nil {
		t.Fatal(err)
	}
	got.WriteByte('\n')
	const golden = "testdata/Caddyfile.example.json"
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("Caddyfile.example adapts to\n%s\nwant (%s)\n%s", got.Bytes(), golden, want)
	}
}
