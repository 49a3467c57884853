package mcpsse

import (
	"strings"
)

// authParam is one parameter of a Bearer challenge (RFC 6750 §3).
type authParam struct{ key, value string }

// bearerParams returns the parameters of the Bearer challenge in a
// WWW-Authenticate value, in their order, and whether there was one.
func bearerParams(header string) ([]authParam, bool) {
	rest := header
	for rest != "" {
		scheme, after := nextToken(strings.TrimLeft(rest, " ,"))
		if scheme == "" {
			return nil, false
		}
		params, tail := parseParams(after)
		if strings.EqualFold(scheme, "Bearer") {
			return params, true
		}
		rest = tail
	}
	return nil, false
}

// parseParams reads the auth-params after a scheme, up to the next
// scheme (a token not followed by "=") or the end, and returns them and
// what follows.
func parseParams(s string) ([]authParam, string) {
	var params []authParam
	for {
		s = strings.TrimLeft(s, " ,")
		key, after := nextToken(s)
		after = strings.TrimLeft(after, " ")
		if key == "" || !strings.HasPrefix(after, "=") {
			return params, s
		}
		value, tail := paramValue(strings.TrimLeft(after[1:], " "))
		params = append(params, authParam{strings.ToLower(key), value})
		s = tail
	}
}

// nextToken splits a leading HTTP token off s.
func nextToken(s string) (token, rest string) {
	i := strings.IndexFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	})
	if i < 0 {
		return s, ""
	}
	return s[:i], s[i:]
}

// paramValue reads a token or a quoted string off s.
func paramValue(s string) (value, rest string) {
	if !strings.HasPrefix(s, `"`) {
		return nextToken(s)
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '"':
			return b.String(), s[i+1:]
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), ""
}

// clientChallenge is the WWW-Authenticate value a client gets for the
// upstream's challenge: its Bearer parameters (scope, error,
// error_description, …) with resource_metadata naming the gateway's own
// metadata, never the upstream's.
func clientChallenge(upstream, metadataURL string) string {
	params, _ := bearerParams(upstream)
	var b strings.Builder
	b.WriteString(`Bearer resource_metadata=`)
	b.WriteString(quote(metadataURL))
	for _, p := range params {
		if p.key == "resource_metadata" {
			continue
		}
		b.WriteString(", ")
		b.WriteString(p.key)
		b.WriteByte('=')
		b.WriteString(quote(p.value))
	}
	return b.String()
}

// quote writes s as an HTTP quoted string.
func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
