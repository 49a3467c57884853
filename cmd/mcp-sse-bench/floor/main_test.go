package floor

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a stream's goroutine behind.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
