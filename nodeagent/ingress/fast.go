package ingress

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// The HTTP/1.1 side of the proxy: fasthttp's server and request and
// response types, and the upstream pool of upstream.go (see the package
// doc). HTTP/2 keeps the net/http path of proxy.go.

// bodyInMemory is the largest response body of known length that is read
// whole from the endpoint before it is answered (as nginx buffers); larger
// ones, and bodies of unknown length (event streams, chunked), are streamed,
// the latter flushed to the client at every read.
const bodyInMemory = 64 << 10

// bodyReadTimeout bounds reading a request body once its headers have come.
const bodyReadTimeout = time.Hour

// newFastServer makes the fasthttp server of one listener.
func (s *Server) newFastServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       s.serveFast,
		Name:                          "",
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		NoDefaultDate:                 false,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		StreamRequestBody:             true,
		ReadBufferSize:                16 << 10, // the longest request head
		WriteBufferSize:               16 << 10,
		ReadTimeout:                   s.cfg.ReadHeaderTimeout,
		IdleTimeout:                   s.cfg.IdleTimeout,
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
		fastError(ctx, "503 service unavailable: the proxy is stopping", http.StatusServiceUnavailable)
		return
	}
	defer s.requestsWG.Done()
	start := s.cfg.Now()
	st := s.state.Load()
	route, ok := st.table.Match(string(ctx.Request.Header.Host()), requestPath(ctx.Request.Header.RequestURI()))
	var rs *routeState
	if ok {
		rs = st.routes[route]
	}
	logged := false
	switch {
	case ctx.IsConnect():
		fastError(ctx, "405 method not allowed", http.StatusMethodNotAllowed)
	case rs == nil:
		fastError(ctx, "404 not found: no route for this host and path", http.StatusNotFound)
	case !ctx.IsTLS() && route.SSLRedirect:
		s.redirectFast(ctx)
	case route.Backend.Unavailable != "":
		fastError(ctx, "503 service unavailable: "+route.Backend.Unavailable, http.StatusServiceUnavailable)
	case len(route.Backend.Endpoints) == 0:
		fastError(ctx, "503 service unavailable: no ready endpoint for service "+route.Backend.Service.String()+" port "+route.Backend.Port, http.StatusServiceUnavailable)
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

func (s *Server) redirectFast(ctx *fasthttp.RequestCtx) {
	host := string(ctx.Request.Header.Host())
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if p := s.cfg.HTTPSPort; p != 0 && p != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(p))
	}
	ctx.Response.Header.Set("Location", "https://"+host+string(ctx.RequestURI()))
	ctx.SetStatusCode(http.StatusPermanentRedirect)
	if ctx.IsGet() || ctx.IsHead() {
		ctx.Response.Header.SetContentType("text/html; charset=utf-8")
	}
}

// requestPath is the decoded path of a request target, as net/http's
// URL.Path. (fasthttp's URI normalizes the path: it is used neither for
// routing nor for the request line written to the endpoint.)
func requestPath(target []byte) string {
	t := string(target)
	if strings.HasPrefix(t, "/") {
		if i := strings.IndexByte(t, '?'); i >= 0 {
			t = t[:i]
		}
		if strings.IndexByte(t, '%') < 0 {
			return t
		}
		if p, err := url.PathUnescape(t); err == nil {
			return p
		}
		return t
	}
	if u, err := url.ParseRequestURI(t); err == nil {
		return u.Path
	}
	return t
}

// hopHeaders are the hop-by-hop headers a proxy does not pass on (RFC 9110,
// 7.6.1); fasthttp itself handles Connection and Transfer-Encoding.
var hopHeaders = []string{"Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Upgrade"}

// forwardHeaders sets the X-Forwarded headers from what the proxy sees and
// drops hop-by-hop ones.
func forwardHeaders(ctx *fasthttp.RequestCtx, keepUpgrade bool) {
	h := &ctx.Request.Header
	for _, k := range hopHeaders {
		if keepUpgrade && k == "Upgrade" {
			continue
		}
		h.Del(k)
	}
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
	clientClose := ctx.Request.Header.ConnectionClose()
	ctx.Request.Header.ResetConnectionClose() // keep the endpoint connection alive
	forwardHeaders(ctx, false)
	// The answer's head (and a small body) is read straight into the
	// client's response.
	body, err := rs.fast.do(&ctx.Request, &ctx.Response, ctx.Conn())
	if clientClose {
		ctx.Request.Header.SetConnectionClose()
	}
	if errors.Is(err, errClientGone) {
		// Nobody reads the answer; the metrics and the access log count
		// it as nginx does, 499.
		ctx.Response.Reset()
		s.log.Debug("request canceled", "host", string(ctx.Request.Header.Host()), "uri", string(ctx.Request.Header.RequestURI()))
		ctx.SetStatusCode(statusClientClosed)
		ctx.SetConnectionClose()
		return false
	}
	if err != nil {
		s.upstreamError(ctx, rs, err)
		return false
	}
	for _, k := range hopHeaders {
		ctx.Response.Header.Del(k)
	}
	ctx.Response.Header.ResetConnectionClose() // the endpoint's, not the client's
	if body == nil {
		return false
	}
	body.done = func(n int64) { s.finishFast(ctx, rs, start, n) }
	size := int(body.size)
	if size < 0 {
		size = -1 // chunked to the client, flushed at every read
	}
	ctx.Response.SetBodyStream(body, size)
	return true
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

// fastEndpoints sends requests to a route's endpoints in turn (round robin)
// and tries the next when a connection cannot be made.
type fastEndpoints struct {
	up *upstream
	t  *endpointTransport // the round-robin counter and retries metric, shared with HTTP/2
}

// do sends req and reads the answer into resp: its head, and its body when
// that is small and of known length. Otherwise it returns the body, which
// the caller must close.
func (e *fastEndpoints) do(req *fasthttp.Request, resp *fasthttp.Response, client net.Conn) (*fastBody, error) {
	eps := e.t.endpoints
	n := uint32(len(eps))
	first := e.t.next.Add(1)
	var err error
	for i := range min(n, maxTries) {
		addr := eps[(first+i)%n]
		var body *fastBody
		body, err = e.up.roundTripFast(req, resp, addr, client)
		var de *dialError
		if err == nil || !errors.As(err, &de) {
			return body, err
		}
		e.t.log.Debug("endpoint refused a connection; trying the next", "endpoint", addr, "err", err)
		if i+1 < min(n, maxTries) {
			e.t.retries.Inc()
		}
	}
	return nil, err
}

// roundTripFast is roundTrip for fasthttp's request and response.
func (u *upstream) roundTripFast(req *fasthttp.Request, resp *fasthttp.Response, addr string, client net.Conn) (*fastBody, error) {
	for {
		pc, reused, err := u.get(context.Background(), addr)
		if err != nil {
			return nil, err
		}
		u.checkout(pc)
		body, err := u.sendFast(pc, req, resp, client)
		if err == nil {
			return body, nil
		}
		u.release(pc, false)
		var fresh *freshConnError
		if reused && errors.As(err, &fresh) && (fresh.unwritten || replayableFast(req)) {
			resp.Reset()
			continue // the endpoint had closed it: on a new connection
		}
		return nil, err
	}
}

// replayableFast is replayable for fasthttp's request.
func replayableFast(req *fasthttp.Request) bool {
	h := &req.Header
	return (h.IsGet() || h.IsHead() || h.IsOptions() || h.IsTrace()) && !req.IsBodyStream() && len(req.Body()) == 0
}

func (u *upstream) sendFast(pc *upConn, req *fasthttp.Request, resp *fasthttp.Response, client net.Conn) (*fastBody, error) {
	if err := req.Write(pc.bw); err != nil {
		if req.IsBodyStream() {
			return nil, err // some of the body may be gone
		}
		return nil, &freshConnError{err: err, unwritten: true}
	}
	if err := pc.bw.Flush(); err != nil {
		return nil, &freshConnError{err: err, unwritten: !req.IsBodyStream() && len(req.Body()) == 0}
	}
	resp.Header.SetNoDefaultContentType(true) // an answer without one is passed on without one
	if err := u.awaitAnswer(pc, client); err != nil {
		return nil, err
	}
	for {
		if err := resp.Header.Read(pc.br); err != nil {
			return nil, err
		}
		// 1xx answers other than 101 come before the real one: skipped.
		if c := resp.StatusCode(); c >= 200 || c == http.StatusSwitchingProtocols {
			break
		}
	}
	pc.c.SetReadDeadline(time.Time{})
	reuse := !resp.Header.ConnectionClose() && !req.Header.ConnectionClose()
	code, n := resp.StatusCode(), resp.Header.ContentLength()
	switch {
	case req.Header.IsHead() || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified:
		resp.SkipBody = true
		u.release(pc, reuse && code != http.StatusSwitchingProtocols)
		return nil, nil
	case n >= 0 && n <= bodyInMemory:
		if err := resp.ReadBody(pc.br, 0); err != nil {
			return nil, err
		}
		u.release(pc, reuse)
		return nil, nil
	}
	// The head stays in resp; the body is read through a response of its
	// own, which the server's copy of it to the client closes.
	stream := fasthttp.AcquireResponse()
	stream.Header.SetContentLength(n)
	stream.StreamBody = true
	if err := stream.ReadBody(pc.br, 0); err != nil {
		fasthttp.ReleaseResponse(stream)
		return nil, err
	}
	return &fastBody{resp: stream, pc: pc, u: u, size: int64(n), reuse: reuse && n >= -1}, nil
}

// errClientGone is the error of a request whose client closed its
// connection before the endpoint answered.
var errClientGone = errors.New("the client closed its connection")

// clientCheckInterval is how often a request waiting for an endpoint's
// answer checks that its client is still there.
const clientCheckInterval = 100 * time.Millisecond

// awaitAnswer waits for the first byte of the endpoint's answer, up to the
// response header timeout. While it waits it checks, every
// clientCheckInterval, that the client has not closed its connection (a
// timed-out client): then it gives up with errClientGone. fasthttp does
// not watch a connection while its request is handled, and a goroutine per
// request to do so would cost what this package saves; a poll only costs
// slow requests.
func (u *upstream) awaitAnswer(pc *upConn, client net.Conn) error {
	var deadline time.Time
	if u.responseHeaderTimeout > 0 {
		deadline = time.Now().Add(u.responseHeaderTimeout)
	}
	for {
		next := time.Now().Add(clientCheckInterval)
		if !deadline.IsZero() && deadline.Before(next) {
			next = deadline
		}
		pc.c.SetReadDeadline(next)
		_, err := pc.br.Peek(1)
		if err == nil {
			return nil
		}
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			return &freshConnError{err: err}
		}
		if !deadline.IsZero() && !time.Now().Before(deadline) {
			return err
		}
		if client != nil && clientGone(client) {
			return errClientGone
		}
	}
}

// clientGone tells, without blocking, whether the client closed (or reset)
// its connection. A TLS client that says close_notify first is not seen
// until the answer is written.
func clientGone(c net.Conn) bool {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	gone := false
	rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = (n == 0 && err == nil) || (err != nil && err != syscall.EAGAIN)
		return true
	})
	return gone
}

// checkout counts pc as in use, so that close can end it.
func (u *upstream) checkout(pc *upConn) {
	u.mu.Lock()
	u.busy[pc] = struct{}{}
	u.mu.Unlock()
}

// release gives a connection in use back to the pool, or closes it.
func (u *upstream) release(pc *upConn, reuse bool) {
	u.mu.Lock()
	delete(u.busy, pc)
	u.mu.Unlock()
	if reuse {
		u.put(pc)
	} else {
		pc.c.Close()
	}
}

// fastBody is an endpoint's answer body read as the server copies it to
// the client. Closed, it gives the connection back when all of it was read,
// and calls done with the bytes it gave.
type fastBody struct {
	resp  *fasthttp.Response
	pc    *upConn
	u     *upstream
	size  int64 // -1: chunked; -2: until the endpoint closes
	reuse bool
	n     int64
	eof   bool
	done  func(n int64)
	once  sync.Once
}

func (b *fastBody) Read(p []byte) (int, error) {
	n, err := b.resp.BodyStream().Read(p)
	b.n += int64(n)
	if err == io.EOF || (b.size >= 0 && b.n >= b.size) {
		b.eof = true
	}
	return n, err
}

func (b *fastBody) Close() error {
	b.once.Do(func() {
		b.resp.CloseBodyStream()
		b.u.release(b.pc, b.reuse && b.eof)
		fasthttp.ReleaseResponse(b.resp)
		if b.done != nil {
			b.done(b.n)
		}
	})
	return nil
}

// upgradeFast passes an Upgrade request (WebSocket) to an endpoint and, when
// it switches protocols, joins the two connections until either ends. It
// reports whether it counted the request itself.
func (s *Server) upgradeFast(ctx *fasthttp.RequestCtx, rs *routeState, start time.Time) bool {
	forwardHeaders(ctx, true)
	eps := rs.route.Backend.Endpoints
	first := rs.fast.t.next.Add(1)
	var (
		conn net.Conn
		err  error
	)
	dialer := &net.Dialer{Timeout: s.cfg.DialTimeout}
	for i := range min(uint32(len(eps)), maxTries) {
		if conn, err = dialer.Dial("tcp", eps[(first+i)%uint32(len(eps))]); err == nil {
			break
		}
	}
	if err != nil {
		s.upstreamError(ctx, rs, err)
		return false
	}
	bw := bufio.NewWriter(conn)
	err = ctx.Request.Write(bw)
	if err == nil {
		err = bw.Flush()
	}
	br := bufio.NewReader(conn)
	var head fasthttp.ResponseHeader
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(s.cfg.ResponseHeaderTimeout))
		err = head.Read(br)
		conn.SetReadDeadline(time.Time{})
	}
	if err != nil {
		conn.Close()
		s.upstreamError(ctx, rs, err)
		return false
	}
	if head.StatusCode() != http.StatusSwitchingProtocols {
		// Refused: answer with the endpoint's response.
		var resp fasthttp.Response
		head.CopyTo(&resp.Header)
		err := resp.ReadBody(br, 0)
		conn.Close()
		if err != nil {
			s.upstreamError(ctx, rs, err)
			return false
		}
		resp.CopyTo(&ctx.Response)
		ctx.Response.Header.ResetConnectionClose()
		return false
	}
	if !s.enter() {
		conn.Close()
		fastError(ctx, "503 service unavailable: the proxy is stopping", http.StatusServiceUnavailable)
		return false
	}
	s.trackUpgraded(conn)
	ctx.SetStatusCode(http.StatusSwitchingProtocols)
	head101 := append([]byte(nil), head.Header()...)
	// The request's ctx is reused once the handler returns: what the access
	// log says of it is taken now.
	entry := fastEntry(ctx, http.StatusSwitchingProtocols, 0, time.Time{})
	// The hijacked connection fasthttp hands over does not close what it
	// wraps; Close must end the one underneath.
	clientConn := ctx.Conn()
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(client net.Conn) {
		defer s.requestsWG.Done()
		s.trackUpgraded(clientConn)
		_, err := client.Write(head101)
		if err == nil && br.Buffered() > 0 {
			b, _ := br.Peek(br.Buffered())
			_, err = client.Write(b)
		}
		if err == nil {
			pipe(client, conn)
		}
		s.untrackUpgraded(clientConn, conn)
		end := s.cfg.Now()
		rs.observe(http.StatusSwitchingProtocols, end.Sub(start))
		if s.access != nil {
			entry.time = end
			s.access.write(entry)
		}
	})
	return true
}

// pipe copies both ways between a and b until either side ends.
func pipe(a, b net.Conn) {
	done := make(chan struct{}, 2)
	cp := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		} else {
			dst.Close()
		}
		done <- struct{}{}
	}
	go cp(a, b)
	go cp(b, a)
	<-done
	a.Close()
	b.Close()
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
		uri:     string(ctx.RequestURI()),
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

// serveTLS accepts TLS connections on ln, finishes each handshake off the
// accept loop and hands the connection to the server of its protocol:
// HTTP/2 to h2 (net/http), the rest to h1 (fasthttp). It returns when ln
// fails or is closed, after closing h1 and h2.
func (s *Server) serveTLS(ln net.Listener, cfg *tls.Config, h1, h2 *connListener) error {
	defer h1.Close()
	defer h2.Close()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(5 * time.Millisecond)
				continue
			}
			return err
		}
		wg.Go(func() {
			tc := tls.Server(c, cfg)
			c.SetDeadline(time.Now().Add(s.cfg.ReadHeaderTimeout))
			if err := tc.Handshake(); err != nil {
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
