package ingress

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// responseWriter notes the status code and the body bytes of an answer. It
// passes Flush and Hijack on (ReverseProxy needs both).
type responseWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *responseWriter) WriteHeader(code int) {
	if w.code == 0 && code >= 200 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *responseWriter) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack is how ReverseProxy takes over an upgraded connection (101).
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil && w.code == 0 {
		w.code = http.StatusSwitchingProtocols
	}
	return c, brw, err
}

func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// accessLog writes the combined log format:
//
//	host - user [time] "request line" status bytes "referer" "user agent"
type accessLog struct {
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

// accessEntry is what one access log line says.
type accessEntry struct {
	remote, user, method, uri, proto, referer, agent string

	code  int
	bytes int64
	time  time.Time
}

// httpEntry is the access log entry of a request served by net/http.
func httpEntry(r *http.Request, code int, n int64, t time.Time) accessEntry {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	user, _, _ := r.BasicAuth()
	return accessEntry{remote: host, user: user, method: r.Method, uri: r.RequestURI, proto: r.Proto,
		referer: r.Referer(), agent: r.UserAgent(), code: code, bytes: n, time: t}
}

func (a *accessLog) write(e accessEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	b := a.buf[:0]
	b = append(b, e.remote...)
	b = append(b, " - "...)
	if e.user != "" {
		b = appendEscaped(b, e.user)
	} else {
		b = append(b, '-')
	}
	b = append(b, " ["...)
	b = e.time.AppendFormat(b, "02/Jan/2006:15:04:05 -0700")
	b = append(b, "] \""...)
	b = appendEscaped(b, e.method)
	b = append(b, ' ')
	b = appendEscaped(b, e.uri)
	b = append(b, ' ')
	b = appendEscaped(b, e.proto)
	b = append(b, "\" "...)
	b = strconv.AppendInt(b, int64(e.code), 10)
	b = append(b, ' ')
	if e.bytes == 0 {
		b = append(b, '-')
	} else {
		b = strconv.AppendInt(b, e.bytes, 10)
	}
	b = append(b, " \""...)
	b = appendEscaped(b, orDash(e.referer))
	b = append(b, "\" \""...)
	b = appendEscaped(b, orDash(e.agent))
	b = append(b, "\"\n"...)
	a.buf = b
	a.w.Write(b) // an access log that cannot be written must not fail requests
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// appendEscaped escapes quotes, backslashes and control bytes as Apache does,
// so a client cannot forge a line.
func appendEscaped(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20 || c >= 0x7f:
			b = append(b, '\\', 'x', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return b
}
