package faultproxy

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Status answers with code, not forwarding the request: a
// distribution-style JSON error for 429 and 503, an HTML page (as a load
// balancer sends) for the others. retryAfter, when not empty, is sent as the
// Retry-After header.
func Status(code int, retryAfter string) Action {
	kind := strconv.Itoa(code)
	if retryAfter != "" {
		kind += "+retry-after"
	}
	return Action{Kind: kind, serve: func(w http.ResponseWriter, r *http.Request, _ func(*http.Request) *http.Response) {
		drain(r)
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		switch code {
		case http.StatusTooManyRequests:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprint(w, `{"errors":[{"code":"TOOMANYREQUESTS","message":"injected"}]}`)
		case http.StatusServiceUnavailable:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			fmt.Fprint(w, `{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}`)
		default:
			// What a load balancer in front of a registry sends.
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(code)
			fmt.Fprintf(w, "<html><body><h1>%d %s</h1></body></html>\n", code, http.StatusText(code))
		}
	}}
}

// ResetRequestAfter reads n bytes of the request body, then resets the
// connection (a client dying mid-upload, e.g. mid-PATCH). Nothing is
// forwarded.
func ResetRequestAfter(n int64) Action {
	return Action{Kind: "reset-request", serve: func(w http.ResponseWriter, r *http.Request, _ func(*http.Request) *http.Response) {
		if r.Body != nil {
			io.CopyN(io.Discard, r.Body, n)
		}
		reset(w)
	}}
}

// ResetResponseAfter forwards the request and sends the registry's status,
// headers and the first n body bytes, then resets the connection (e.g.
// mid-GET of a layer).
func ResetResponseAfter(n int64) Action {
	return Action{Kind: "reset-response", serve: func(w http.ResponseWriter, r *http.Request, forward func(*http.Request) *http.Response) {
		resp := forward(r)
		copyResponse(w, resp, n)
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
		reset(w)
	}}
}

// Delay waits d (or until the client gives up), then forwards.
func Delay(d time.Duration) Action {
	return Action{Kind: "delay", serve: func(w http.ResponseWriter, r *http.Request, forward func(*http.Request) *http.Response) {
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return
		}
		copyResponse(w, forward(r), -1)
	}}
}

// RewriteHeader forwards and replaces the response header name with
// f(old value) (deleted when f returns "").
func RewriteHeader(name string, f func(old string) string) Action {
	return Action{Kind: "rewrite-" + strings.ToLower(name), serve: func(w http.ResponseWriter, r *http.Request, forward func(*http.Request) *http.Response) {
		resp := forward(r)
		if v := f(resp.Header.Get(name)); v != "" {
			resp.Header.Set(name, v)
		} else {
			resp.Header.Del(name)
		}
		copyResponse(w, resp, -1)
	}}
}

// Body forwards, then replaces the response body with body, keeping the
// registry's status and headers except Content-Length (which matches body).
// headers, when given, are set on the response as well.
func Body(kind string, body []byte, headers map[string]string) Action {
	return Action{Kind: kind, serve: func(w http.ResponseWriter, r *http.Request, forward func(*http.Request) *http.Response) {
		resp := forward(r)
		resp.Body.Close()
		for k, vs := range resp.Header {
			w.Header()[k] = vs
		}
		for k, v := range headers {
			w.Header().Set(k, v)
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(resp.StatusCode)
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	}}
}

// Truncate forwards and sends only the first n body bytes, with a
// Content-Length of n: a clean response that is too short.
func Truncate(n int64) Action {
	return Action{Kind: "truncate", serve: func(w http.ResponseWriter, r *http.Request, forward func(*http.Request) *http.Response) {
		resp := forward(r)
		resp.Header.Set("Content-Length", strconv.FormatInt(n, 10))
		copyResponse(w, resp, n)
	}}
}

// Endless answers with code and a body that never ends (chunked, 32 KiB of
// filler at a time) until the client goes away, max bytes were sent or
// the deadline passes: a response no client should read whole. contentType
// is sent when not empty.
func Endless(code int, contentType string, max int64, deadline time.Duration) Action {
	return Action{Kind: "endless", serve: func(w http.ResponseWriter, r *http.Request, _ func(*http.Request) *http.Response) {
		drain(r)
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(code)
		chunk := []byte(strings.Repeat(`{"errors":[{"code":"UNKNOWN","message":"`, 1))
		fill := make([]byte, 32<<10)
		for i := range fill {
			fill[i] = 'x'
		}
		w.Write(chunk)
		end := time.Now().Add(deadline)
		var sent int64
		for sent < max && time.Now().Before(end) && r.Context().Err() == nil {
			n, err := w.Write(fill)
			sent += int64(n)
			if err != nil {
				return
			}
		}
	}}
}

// Serve answers with h and forwards nothing (for hand-made responses).
func Serve(kind string, h http.HandlerFunc) Action {
	return Action{Kind: kind, serve: func(w http.ResponseWriter, r *http.Request, _ func(*http.Request) *http.Response) {
		h(w, r)
	}}
}

// Forward forwards the request unchanged but counts it as kind (to count
// requests a rule matched, e.g. to a decoy).
func Forward(kind string) Action {
	return Action{Kind: kind, serve: func(w http.ResponseWriter, r *http.Request, forward func(*http.Request) *http.Response) {
		copyResponse(w, forward(r), -1)
	}}
}

// drain reads (a bounded amount of) the request body so the client sees
// the response rather than a broken pipe.
func drain(r *http.Request) {
	if r.Body != nil {
		io.CopyN(io.Discard, r.Body, 64<<20)
	}
}
