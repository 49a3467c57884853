package mcpsse

import (
	"errors"
	"net/http"
)

// Why an exchange with the upstream failed. A client gets one of these as
// its JSON-RPC error message; the log gets the whole error, with the
// upstream's address and the details a client has no business seeing.
var (
	errUnreachable   = errors.New("upstream unreachable")
	errHeaderTimeout = errors.New("upstream sent no response headers within the upstream timeout")
	errNotMCP        = errors.New("upstream answered with something that is not MCP")
	errBrokenAnswer  = errors.New("upstream answer broke off")
	errNoResponse    = errors.New("upstream answer ended without a response to the request")
)

// statusError is an upstream answer with a status other than 2xx, with
// its WWW-Authenticate challenge, if any.
type statusError struct {
	code      int
	status    string
	challenge string
}

// refusesCredential reports whether the upstream refused the request's
// credential: 401 (none, or not valid) or 403 (not enough).
func (e *statusError) refusesCredential() bool {
	return e.code == http.StatusUnauthorized || e.code == http.StatusForbidden
}

func (e *statusError) Error() string { return "upstream answered " + e.status }

// failure names the cause of a failed exchange: a short reason for logs
// and the message for the client.
func failure(err error) (reason, public string) {
	var se *statusError
	switch {
	case errors.As(err, &se):
		return "status", se.Error()
	case errors.Is(err, errHeaderTimeout):
		return "timeout", errHeaderTimeout.Error()
	case errors.Is(err, errNotMCP):
		return "not_mcp", errNotMCP.Error()
	case errors.Is(err, errBrokenAnswer):
		return "broken", errBrokenAnswer.Error()
	case errors.Is(err, errNoResponse):
		return "no_response", errNoResponse.Error()
	case errors.Is(err, errNotStateless):
		return "protocol", errNotStateless.Error()
	}
	return "unreachable", errUnreachable.Error()
}

// checkStatus returns a *statusError for a response that is not 2xx.
func checkStatus(resp *http.Response) error {
	if resp.StatusCode/100 == 2 {
		return nil
	}
	return &statusError{code: resp.StatusCode, status: resp.Status, challenge: resp.Header.Get("WWW-Authenticate")}
}
