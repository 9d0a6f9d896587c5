package ingress

import (
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"iter"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// The client side of the HTTP/1.1 proxy: fasthttp's server (see the package
// doc); fastup.go is the endpoint side. HTTP/2 keeps the net/http path of
// proxy.go.

// bodyReadTimeout bounds reading a request body once its headers have come.
const bodyReadTimeout = time.Hour

// http10BodyLimit is the longest answer of unknown length an HTTP/1.0
// client gets: it cannot take a chunked one, so the answer is read whole
// first and sent with its length.
const http10BodyLimit = 16 << 20

// newFastServer makes the fasthttp server of one listener.
func (s *Server) newFastServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      s.serveFast,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		StreamRequestBody:            true,
		ReadBufferSize:               16 << 10, // the longest request head
		WriteBufferSize:              16 << 10,
		ReadTimeout:                  s.cfg.ReadHeaderTimeout,
		IdleTimeout:                  s.cfg.IdleTimeout,
		HeaderReceived: func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
			return fasthttp.RequestConfig{ReadTimeout: bodyReadTimeout}
		},
		ConnState: s.trackConn,
		Logger:    s.errorLog,
	}
}

// trackConn keeps the set of client connections open, so that Close can end
// them.
func (s *Server) trackConn(c net.Conn, st fasthttp.ConnState) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	switch st {
	case fasthttp.StateNew:
		if s.connsClosed {
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		delete(s.conns, c)
	}
}

// closeConns closes every tracked client connection, upgraded ones and
// their endpoint side too, and every one tracked from now on.
func (s *Server) closeConns() {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	s.connsClosed = true
	for c := range s.conns {
		c.Close()
	}
	for c := range s.upgraded {
		c.Close()
	}
	clear(s.conns)
	clear(s.upgraded)
}

// serveFast routes one HTTP/1.1 request by the current table.
func (s *Server) serveFast(ctx *fasthttp.RequestCtx) {
	if !s.enter() {
		ctx.SetConnectionClose()
		fastError(ctx, msgStopping, http.StatusServiceUnavailable)
		return
	}
	defer s.requestsWG.Done()
	start := s.cfg.Now()
	st := s.state.Load()
	host, path := requestTarget(&ctx.Request)
	route, ok := st.table.Match(host, path)
	var rs *routeState
	if ok {
		rs = st.routes[route]
	}
	logged := false
	switch v, code, msg := decide(rs, ctx.IsConnect(), !ctx.IsTLS()); {
	case v == refuse:
		fastError(ctx, msg, code)
	case v == toHTTPS:
		ctx.Response.Header.Set("Location", s.httpsURL(string(ctx.Request.Header.Host()), string(ctx.Request.Header.RequestURI())))
		ctx.SetStatusCode(http.StatusPermanentRedirect)
		if ctx.IsGet() || ctx.IsHead() {
			ctx.Response.Header.SetContentType("text/html; charset=utf-8")
		}
	case ctx.Request.Header.ConnectionUpgrade():
		logged = s.upgradeFast(ctx, rs, start)
	default:
		logged = s.proxyFast(ctx, rs, start)
	}
	if !logged {
		if rs == nil {
			rs = st.unmatched
		}
		s.finishFast(ctx, rs, start, int64(len(ctx.Response.Body())))
	}
}

// finishFast counts a request in the metrics and writes its access log line.
func (s *Server) finishFast(ctx *fasthttp.RequestCtx, rs *routeState, start time.Time, n int64) {
	end := s.cfg.Now()
	code := ctx.Response.StatusCode()
	rs.observe(code, end.Sub(start))
	if s.access != nil {
		s.access.write(fastEntry(ctx, code, n, end))
	}
}

// fastError answers as http.Error does.
func fastError(ctx *fasthttp.RequestCtx, msg string, code int) {
	ctx.Response.ResetBody()
	ctx.Response.Header.Reset()
	ctx.SetStatusCode(code)
	ctx.Response.Header.SetContentType("text/plain; charset=utf-8")
	ctx.Response.Header.Set("X-Content-Type-Options", "nosniff")
	ctx.Response.SetBodyString(msg + "\n")
}

// requestTarget is the host and the decoded path (as net/http's URL.Path)
// a request is routed by. The target is passed on as the client sent it:
// fasthttp's URI, which normalizes the path, is used for neither. An
// absolute-form target ("GET http://host/path") is routed by its host and
// made origin-form with that Host, as net/http does.
func requestTarget(req *fasthttp.Request) (host, path string) {
	t := string(req.Header.RequestURI())
	if !strings.HasPrefix(t, "/") {
		u, err := url.ParseRequestURI(t)
		if err != nil || u.Host == "" {
			return string(req.Header.Host()), t
		}
		req.Header.SetHost(u.Host)
		req.SetRequestURI(u.RequestURI())
		return u.Host, u.Path
	}
	host = string(req.Header.Host())
	if i := strings.IndexByte(t, '?'); i >= 0 {
		t = t[:i]
	}
	if strings.IndexByte(t, '%') < 0 {
		return host, t
	}
	if p, err := url.PathUnescape(t); err == nil {
		return host, p
	}
	return host, t
}

// hopHeaders are the hop-by-hop headers a proxy does not pass on (RFC 9110,
// 7.6.1), besides Connection, those it names and Transfer-Encoding, which
// fasthttp frames itself.
var hopHeaders = []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

// dropHopHeaders deletes the hop-by-hop headers of one side, keep aside.
// (Header names are normalized, so Del finds them whatever the client's
// case.) all walks the headers once; only those found are deleted, for
// deleting one that is not there costs a search too.
func dropHopHeaders(all iter.Seq2[[]byte, []byte], del func(string), keep string) {
	var found []string
	var connection []byte
	for k, v := range all {
		switch {
		case string(k) == "Connection":
			connection = v
		case isHopHeader(k) && string(k) != keep:
			found = append(found, string(k))
		}
	}
	if len(connection) > 0 {
		if !bytes.EqualFold(connection, []byte("keep-alive")) && !bytes.EqualFold(connection, []byte("close")) {
			for _, name := range strings.Split(string(connection), ",") {
				name = strings.TrimSpace(name)
				if name != "" && !strings.EqualFold(name, keep) {
					found = append(found, name)
				}
			}
		}
		found = append(found, "Connection")
	}
	for _, k := range found {
		del(k)
	}
}

func isHopHeader(k []byte) bool {
	for _, h := range hopHeaders {
		if string(k) == h {
			return true
		}
	}
	return false
}

// forwardHeaders readies the request for the endpoint: hop-by-hop headers
// out (but Upgrade, when upgrade), X-Forwarded-* from what the proxy sees.
func forwardHeaders(ctx *fasthttp.RequestCtx, upgrade bool) {
	h := &ctx.Request.Header
	if upgrade {
		dropHopHeaders(h.All(), h.Del, "Upgrade")
		h.Set("Connection", "Upgrade")
	} else {
		dropHopHeaders(h.All(), h.Del, "")
	}
	h.Del("Expect") // the server answered 100 Continue itself
	// The server parsed (and normalized) the URI; writing the request line
	// from the header's raw target keeps it as the client sent it.
	ctx.Request.SetRequestURIBytes(h.RequestURI())
	h.Set("X-Forwarded-For", ctx.RemoteIP().String())
	h.SetBytesV("X-Forwarded-Host", h.Host())
	if ctx.IsTLS() {
		h.Set("X-Forwarded-Proto", "https")
	} else {
		h.Set("X-Forwarded-Proto", "http")
	}
}

// proxyFast proxies one request to the route's endpoints. It reports whether
// it counted the request itself (a streamed body is counted when it ends).
func (s *Server) proxyFast(ctx *fasthttp.RequestCtx, rs *routeState, start time.Time) bool {
	h := &ctx.Request.Header
	clientClose, http10 := h.ConnectionClose(), !h.IsHTTP11()
	h.ResetConnectionClose() // keep the endpoint connection alive
	if http10 {
		h.SetProtocol("HTTP/1.1") // endpoints get HTTP/1.1 whatever the client speaks
	}
	forwardHeaders(ctx, false)
	// The answer's head (and a short body) is read straight into the
	// client's response.
	body, err := rs.fast.do(&ctx.Request, &ctx.Response, ctx.Conn())
	if http10 {
		h.SetProtocol("HTTP/1.0")
	}
	if clientClose {
		h.SetConnectionClose()
	}
	if errors.Is(err, errClientGone) {
		// Nobody reads the answer; the metrics and the access log count
		// it as nginx does, 499.
		ctx.Response.Reset()
		s.log.Debug("request canceled", "host", string(h.Host()), "uri", string(h.RequestURI()))
		ctx.SetStatusCode(statusClientClosed)
		ctx.SetConnectionClose()
		return false
	}
	if err != nil {
		s.upstreamError(ctx, rs, err)
		return false
	}
	rh := &ctx.Response.Header
	dropHopHeaders(rh.All(), rh.Del, "")
	rh.ResetConnectionClose() // the endpoint's, not the client's
	if body == nil {
		return false
	}
	if http10 && body.size < 0 {
		b, err := io.ReadAll(io.LimitReader(body, http10BodyLimit+1))
		body.Close()
		switch {
		case err != nil:
			s.upstreamError(ctx, rs, err)
		case len(b) > http10BodyLimit:
			fastError(ctx, "502 bad gateway: the answer of unknown length is longer than an HTTP/1.0 client can be given", http.StatusBadGateway)
		default:
			ctx.Response.SetBodyRaw(b)
		}
		return false
	}
	s.streamAnswer(ctx, rs, start, body)
	return true
}

// streamAnswer has the server copy an answer's body to the client as it
// writes the response: chunked, and flushed at every read, when its length
// is unknown. The request counts until the copy ends (Close waits for it),
// and is then logged.
func (s *Server) streamAnswer(ctx *fasthttp.RequestCtx, rs *routeState, start time.Time, body *fastBody) {
	s.requestsWG.Add(1)
	body.done = func(n int64) {
		s.finishFast(ctx, rs, start, n)
		s.requestsWG.Done()
	}
	ctx.Response.SetBodyStream(body, int(max(body.size, -1)))
}

// upstreamError answers a request whose endpoints gave no answer.
func (s *Server) upstreamError(ctx *fasthttp.RequestCtx, rs *routeState, err error) {
	backend := rs.route.Backend.Service.String() + ":" + rs.route.Backend.Port
	var ne net.Error
	if errors.Is(err, fasthttp.ErrTimeout) || errors.As(err, &ne) && ne.Timeout() {
		fastError(ctx, "504 gateway timeout: service "+backend+" did not answer in time", http.StatusGatewayTimeout)
		return
	}
	s.log.Info("upstream error", "backend", backend, "host", string(ctx.Request.Header.Host()), "uri", string(ctx.Request.Header.RequestURI()), "err", err)
	fastError(ctx, "502 bad gateway: no answer from service "+backend, http.StatusBadGateway)
}

// hijackWait is how long an endpoint connection waits for fasthttp to hand
// over the client's connection after a 101; fasthttp drops the hand-over
// when the client's connection fails first.
const hijackWait = 30 * time.Second

// upgradeFast passes an Upgrade request (WebSocket) to an endpoint and, when
// it switches protocols, joins the two connections until either ends. It
// reports whether it counted the request itself.
func (s *Server) upgradeFast(ctx *fasthttp.RequestCtx, rs *routeState, start time.Time) bool {
	forwardHeaders(ctx, true)
	pc, err := rs.fast.dial()
	if err != nil {
		s.upstreamError(ctx, rs, err)
		return false
	}
	s.upstream.checkout(pc)
	err = ctx.Request.Write(pc.bw)
	if err == nil {
		err = pc.bw.Flush()
	}
	if err == nil {
		pc.c.SetReadDeadline(time.Now().Add(s.cfg.ResponseHeaderTimeout))
		err = ctx.Response.Header.Read(pc.br)
		pc.c.SetReadDeadline(time.Time{})
	}
	if err != nil {
		s.upstream.release(pc, false)
		s.upstreamError(ctx, rs, err)
		return false
	}
	if ctx.Response.StatusCode() != http.StatusSwitchingProtocols {
		// Not upgraded: the endpoint's answer, as for any request.
		body, err := s.upstream.readAnswerBody(pc, &ctx.Response, false, false)
		if err != nil {
			s.upstream.release(pc, false)
			s.upstreamError(ctx, rs, err)
			return false
		}
		if body == nil {
			return false
		}
		s.streamAnswer(ctx, rs, start, body)
		return true
	}
	return s.joinUpgraded(ctx, rs, start, pc)
}

// joinUpgraded hands the client's connection and the endpoint's, which
// switched protocols, to a goroutine that copies between them until either
// ends.
func (s *Server) joinUpgraded(ctx *fasthttp.RequestCtx, rs *routeState, start time.Time, pc *upConn) bool {
	// The endpoint side leaves the pool's count for the upgraded set, which
	// Close closes.
	s.upstream.forget(pc)
	s.trackUpgraded(pc.c)
	head := append([]byte(nil), ctx.Response.Header.Header()...)
	// The request's ctx is reused once the handler returns: what the access
	// log says of it is taken now.
	entry := fastEntry(ctx, http.StatusSwitchingProtocols, 0, time.Time{})
	// The hijacked connection fasthttp hands over does not close what it
	// wraps; the one underneath is closed.
	clientConn := ctx.Conn()
	var started atomic.Bool
	guard := time.AfterFunc(hijackWait, func() {
		if started.CompareAndSwap(false, true) {
			s.untrackUpgraded(pc.c) // fasthttp dropped the hand-over
		}
	})
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) {
		if !started.CompareAndSwap(false, true) {
			return
		}
		guard.Stop()
		if !s.enter() {
			s.untrackUpgraded(pc.c, clientConn)
			return
		}
		defer s.requestsWG.Done()
		s.trackUpgraded(clientConn)
		_, err := clientConn.Write(head)
		if err == nil && pc.br.Buffered() > 0 {
			b, _ := pc.br.Peek(pc.br.Buffered())
			_, err = clientConn.Write(b)
		}
		if err == nil {
			pipe(client, clientConn, pc.c)
		}
		s.untrackUpgraded(clientConn, pc.c)
		end := s.cfg.Now()
		rs.observe(http.StatusSwitchingProtocols, end.Sub(start))
		if s.access != nil {
			entry.time = end
			s.access.write(entry)
		}
	})
	return true
}

// pipe copies both ways between a client (read through client, which
// holds what fasthttp had buffered, written and closed through clientConn)
// and an endpoint, until either side ends.
func pipe(client, clientConn, endpoint net.Conn) {
	done := make(chan struct{}, 2)
	closeWrite := func(c net.Conn) {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			c.Close()
		}
	}
	go func() {
		io.Copy(endpoint, client)
		closeWrite(endpoint)
		done <- struct{}{}
	}()
	go func() {
		io.Copy(clientConn, endpoint)
		closeWrite(clientConn)
		done <- struct{}{}
	}()
	<-done
	clientConn.Close()
	endpoint.Close()
	<-done
}

// trackUpgraded keeps c in the set of upgraded connections, which Close
// closes; on a closed Server it closes c at once.
func (s *Server) trackUpgraded(c net.Conn) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	if s.connsClosed {
		c.Close()
		return
	}
	s.upgraded[c] = struct{}{}
}

// untrackUpgraded closes and forgets upgraded connections.
func (s *Server) untrackUpgraded(cs ...net.Conn) {
	s.connsMu.Lock()
	defer s.connsMu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(s.upgraded, c)
	}
}

// fastEntry is the access log entry of a request served by fasthttp.
func fastEntry(ctx *fasthttp.RequestCtx, code int, n int64, t time.Time) accessEntry {
	return accessEntry{
		remote:  ctx.RemoteIP().String(),
		user:    basicAuthUser(ctx.Request.Header.Peek("Authorization")),
		method:  string(ctx.Method()),
		uri:     string(ctx.Request.Header.RequestURI()),
		proto:   string(ctx.Request.Header.Protocol()),
		referer: string(ctx.Referer()),
		agent:   string(ctx.UserAgent()),
		code:    code,
		bytes:   n,
		time:    t,
	}
}

// basicAuthUser is the user name of a Basic Authorization header, or "".
func basicAuthUser(h []byte) string {
	const prefix = "basic "
	if len(h) < len(prefix) || !bytes.EqualFold(h[:len(prefix)], []byte(prefix)) {
		return ""
	}
	dec, err := base64.StdEncoding.DecodeString(string(h[len(prefix):]))
	if err != nil {
		return ""
	}
	user, _, _ := bytes.Cut(dec, []byte(":"))
	return string(user)
}

// serveTLS accepts TLS connections on ln, makes each handshake off the
// accept loop and hands the connection to the server of its protocol:
// HTTP/2 to h2 (net/http), the rest to h1 (fasthttp). A connection still in
// its handshake is tracked, so Close ends it. serveTLS returns when ln
// fails or is closed, after closing h1 and h2.
func (s *Server) serveTLS(ln net.Listener, cfg *tls.Config, h1, h2 *connListener) error {
	defer h1.Close()
	defer h2.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		s.trackConn(c, fasthttp.StateNew)
		wg.Go(func() {
			tc := tls.Server(c, cfg)
			c.SetDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
			err := tc.Handshake()
			s.trackConn(c, fasthttp.StateClosed) // from here on, its server tracks it
			if err != nil {
				s.log.Debug("TLS handshake failed", "client", c.RemoteAddr().String(), "err", err)
				c.Close()
				return
			}
			c.SetDeadline(time.Time{})
			to := h1
			if tc.ConnectionState().NegotiatedProtocol == "h2" {
				to = h2
			}
			if !to.put(tc) {
				tc.Close()
			}
		})
	}
}

// connListener is a net.Listener of connections accepted elsewhere.
type connListener struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closer sync.Once
}

func newConnListener(addr net.Addr) *connListener {
	return &connListener{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

// put hands c to Accept; it reports false once the listener is closed.
func (l *connListener) put(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *connListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *connListener) Close() error {
	l.closer.Do(func() { close(l.done) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.addr }

// retryListener retries an Accept that failed for want of resources (file
// descriptors, buffers), backing off up to a second as net/http does,
// instead of ending Serve.
type retryListener struct {
	net.Listener
	log interface{ Warn(string, ...any) }
}

func (l retryListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil || !temporaryAcceptError(err) {
			return c, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		l.log.Warn("accept failed; retrying", "err", err, "in", delay)
		time.Sleep(delay)
	}
}

func temporaryAcceptError(err error) bool {
	for _, e := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
