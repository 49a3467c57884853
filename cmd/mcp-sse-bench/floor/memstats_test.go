package floor

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestServeMemStats: the route answers every figure, after a collection.
func TestServeMemStats(t *testing.T) {
	w := httptest.NewRecorder()
	if err := serveMemStats(w, httptest.NewRequest(http.MethodGet, MemStatsPath, nil)); err != nil {
		t.Fatal(err)
	}
	var m MemStats
	if err := json.Unmarshal(w.Body.Bytes(), &m); err != nil {
		t.Fatalf("decoding %q: %v", w.Body.String(), err)
	}
	if m.HeapLive == 0 || m.HeapInUse < m.HeapLive || m.Stacks == 0 || m.Goroutines == 0 || m.TotalMapped < m.HeapInUse+m.HeapFree+m.Stacks {
		t.Errorf("implausible memstats: %+v", m)
	}
	if err := serveMemStats(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, MemStatsPath, nil)); err == nil {
		t.Error("POST was served")
	}
}
