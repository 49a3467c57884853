package main

import (
	"encoding/json"
	"errors"
	"time"
)

// What the gateway promises on the wire, as its clients, its upstreams and
// its operators see it. The tests pin these values here, apart from the
// plugin's own names for them, so that a change to the contract shows.

// Headers of the Streamable HTTP transport.
const (
	headerSessionID       = "Mcp-Session-Id"
	headerProtocolVersion = "Mcp-Protocol-Version"
)

// JSON-RPC error codes the gateway answers with.
const (
	codeParseError     = -32700
	codeInvalidRequest = -32600
	codeInternalError  = -32603
	codeServerBusy     = -32000
)

// defaultMaxInFlight is max_in_flight's documented default.
const defaultMaxInFlight = 64

// The failures a client reads in its JSON-RPC error, by cause.
var (
	errUnreachable   = errors.New("upstream unreachable")
	errHeaderTimeout = errors.New("upstream sent no response headers within the upstream timeout")
	errNotMCP        = errors.New("upstream answered with something that is not MCP")
	errBrokenAnswer  = errors.New("upstream answer broke off")
	errNoResponse    = errors.New("upstream answer ended without a response to the request")
)

// errorMessage is a JSON-RPC error response.
type errorMessage struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Error   errorObject     `json:"error"`
}

type errorObject struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// adminSessionsPath is where the admin API lists the sessions.
const adminSessionsPath = "/mcp_sse/sessions"

// sessionInfo is one session as the admin API shows it.
type sessionInfo struct {
	ID               string    `json:"id"`
	Handler          string    `json:"handler"`
	Upstream         string    `json:"upstream"`
	Prefix           string    `json:"prefix"`
	RemoteAddr       string    `json:"remote_addr"`
	User             string    `json:"user"`
	Created          time.Time `json:"created"`
	AgeSeconds       float64   `json:"age_seconds"`
	MessagesSent     uint64    `json:"messages_sent"`
	MessagesReceived uint64    `json:"messages_received"`
	MessagesInFlight int       `json:"messages_in_flight"`
	StreamAttached   bool      `json:"stream_attached"`
	UpstreamSession  bool      `json:"upstream_session"`
}
