package ingress

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	routing "github.com/keelson/keelson/ingress"
)

// Config configures a Server. The zero value works: no metrics, no access
// log, and the default timeouts.
type Config struct {
	// Logger gets errors and debug details; nil discards them.
	Logger *slog.Logger
	// Registerer gets the proxy's metrics; nil registers none.
	Registerer prometheus.Registerer
	// AccessLog gets one line per request in the combined log format; nil
	// writes none. Lines are written whole, one Write each.
	AccessLog io.Writer
	// Now is the clock of the access log and the latency metrics; nil is
	// time.Now.
	Now func() time.Time

	// HTTPSPort is the port redirects to HTTPS point at; 0 or 443 writes
	// none in the Location.
	HTTPSPort int
	// FallbackCertificate is served to TLS clients whose server name has no
	// certificate in the table (nor a default one); nil fails such
	// handshakes.
	FallbackCertificate *tls.Certificate

	// ReadHeaderTimeout bounds reading a request's headers (10 s).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes client keep-alive connections idle that long (120 s).
	IdleTimeout time.Duration
	// DialTimeout bounds connecting to an endpoint (5 s).
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds waiting for an endpoint's response
	// headers once the request is sent (60 s, nginx's proxy_read_timeout).
	ResponseHeaderTimeout time.Duration
	// MaxIdleConnsPerEndpoint is the number of idle keep-alive connections
	// kept to each endpoint (512).
	MaxIdleConnsPerEndpoint int
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.ReadHeaderTimeout == 0 {
		c.ReadHeaderTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = 5 * time.Second
	}
	if c.ResponseHeaderTimeout == 0 {
		c.ResponseHeaderTimeout = 60 * time.Second
	}
	if c.MaxIdleConnsPerEndpoint == 0 {
		c.MaxIdleConnsPerEndpoint = 512
	}
}

// Server is the Ingress proxy. Its methods are safe for concurrent use. It
// owns the goroutines Serve starts and the upstream connections; Close (or
// Shutdown) ends them all.
type Server struct {
	cfg      Config
	log      *slog.Logger
	errorLog *log.Logger // net/http's and ReverseProxy's messages, at debug level
	upstream *upstream
	metrics  *metrics
	access   *accessLog
	bufs     *bufferPool

	state    atomic.Pointer[state]
	updateMu sync.Mutex // one Update at a time

	mu          sync.RWMutex // guards the fields below; read-held to enter a request
	closed      bool
	stopping    bool
	serving     bool
	cancel      context.CancelFunc // cancels every request's context
	servers     []*http.Server     // HTTP/2
	fastServers []*fasthttp.Server // HTTP/1.1
	listeners   []net.Listener

	connsMu     sync.Mutex
	conns       map[net.Conn]struct{} // open HTTP/1.1 client connections
	upgraded    map[net.Conn]struct{} // both sides of upgraded connections
	connsClosed bool

	serveWG    sync.WaitGroup // the goroutines of Serve
	requestsWG sync.WaitGroup // requests being handled
}

// New makes a Server with an empty table. It fails only when the metrics
// cannot be registered.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, metrics: m, bufs: newBufferPool(),
		conns: map[net.Conn]struct{}{}, upgraded: map[net.Conn]struct{}{}}
	s.errorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	if cfg.AccessLog != nil {
		s.access = &accessLog{w: cfg.AccessLog}
	}
	s.upstream = newUpstream(cfg)
	s.state.Store(s.newState(routing.Empty(), nil))
	return s, nil
}

// Update makes t the table of every request and TLS handshake from now on.
// Requests already under way finish with the table they started with. A nil
// table is an empty one.
func (s *Server) Update(t *routing.Table) {
	if t == nil {
		t = routing.Empty()
	}
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	old := s.state.Load()
	s.state.Store(s.newState(t, old))
	keep := map[string]bool{}
	for _, r := range t.Routes() {
		for _, ep := range r.Backend.Endpoints {
			keep[ep] = true
		}
	}
	s.upstream.retain(keep) // connections to endpoints gone
}

// Table returns the table in use.
func (s *Server) Table() *routing.Table { return s.state.Load().table }

// ErrServing is returned by Serve when the Server serves already or is
// closed.
var ErrServing = errors.New("ingress: server already serving or closed")

// Serve accepts plain HTTP connections on httpLn and TLS ones on httpsLn
// (either may be nil) until Close or Shutdown, and then returns
// http.ErrServerClosed. When a listener fails, Serve stops both and returns
// that error; Close then ends what is left. Serve runs once per Server, which
// owns the listeners from then on.
func (s *Server) Serve(httpLn, httpsLn net.Listener) error {
	s.mu.Lock()
	if s.closed || s.stopping || s.serving {
		s.mu.Unlock()
		return ErrServing
	}
	s.serving = true
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	errc := make(chan error, 2)
	n := 0
	if httpLn != nil {
		fs := s.newFastServer()
		s.fastServers = append(s.fastServers, fs)
		s.listeners = append(s.listeners, httpLn)
		n++
		s.serveWG.Go(func() { errc <- fs.Serve(retryListener{httpLn, s.log}) })
	}
	if httpsLn != nil {
		h1, h2 := newConnListener(httpsLn.Addr()), newConnListener(httpsLn.Addr())
		fs := s.newFastServer()
		// No TLSConfig: net/http then serves the HTTP/2 connections it is
		// given, whose handshakes serveTLS made.
		srv := &http.Server{
			Handler:     s,
			IdleTimeout: s.cfg.IdleTimeout,
			ErrorLog:    s.errorLog,
			BaseContext: func(net.Listener) context.Context { return ctx },
		}
		s.fastServers = append(s.fastServers, fs)
		s.servers = append(s.servers, srv)
		s.listeners = append(s.listeners, httpsLn, h1, h2)
		cfg := &tls.Config{GetCertificate: s.getCertificate, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
		n++
		s.serveWG.Go(func() { fs.Serve(h1) })
		s.serveWG.Go(func() { srv.Serve(h2) })
		s.serveWG.Go(func() { errc <- s.serveTLS(retryListener{httpsLn, s.log}, cfg, h1, h2) })
	}
	s.mu.Unlock()

	var first error
	for range n {
		err := <-errc
		s.mu.RLock()
		ending := s.closed || s.stopping
		s.mu.RUnlock()
		if first == nil && err != nil && !ending {
			first = err
			s.closeServers() // one listener failed: stop the other too
		}
	}
	if first != nil {
		return first
	}
	return http.ErrServerClosed
}

// closeServers stops accepting connections.
func (s *Server) closeServers() {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, ln := range s.listeners {
		ln.Close()
	}
}

// Close stops serving at once: it closes the listeners and every client
// connection (upgraded ones too), cancels the requests under way, waits
// until each has ended and closes the upstream connections.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.cancel != nil {
		s.cancel()
	}
	servers, listeners := s.servers, s.listeners
	s.mu.Unlock()
	var err error
	for _, ln := range listeners {
		if cerr := ln.Close(); cerr != nil && !errors.Is(cerr, net.ErrClosed) {
			err = errors.Join(err, cerr)
		}
	}
	for _, srv := range servers {
		err = errors.Join(err, srv.Close())
	}
	s.closeConns()
	s.upstream.close() // requests waiting on endpoints end now
	s.serveWG.Wait()
	s.requestsWG.Wait()
	return err
}

// Shutdown stops accepting connections and waits for the requests under way
// to finish, until ctx ends; then it does what Close does. Upgraded
// connections (WebSockets) are not waited for: they are closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true // no Serve from now on; requests on open connections still count
	servers, fastServers, listeners := s.servers, s.fastServers, s.listeners
	s.mu.Unlock()
	for _, ln := range listeners {
		ln.Close()
	}
	var err error
	for _, fs := range fastServers {
		if ferr := fs.ShutdownWithContext(ctx); ferr != nil && !errors.Is(ferr, net.ErrClosed) {
			err = errors.Join(err, ferr) // its listeners are closed already
		}
	}
	for _, srv := range servers {
		err = errors.Join(err, srv.Shutdown(ctx))
	}
	return errors.Join(err, s.Close())
}

// enter counts a request in, unless the Server is closed.
func (s *Server) enter() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return false
	}
	s.requestsWG.Add(1)
	return true
}

func (s *Server) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c, ok := s.state.Load().table.Certificate(hello.ServerName); ok {
		return c, nil
	}
	if s.cfg.FallbackCertificate != nil {
		return s.cfg.FallbackCertificate, nil
	}
	return nil, fmt.Errorf("no certificate for server name %q", hello.ServerName)
}

// ServeHTTP routes one request by the current table.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enter() {
		w.Header().Set("Connection", "close")
		http.Error(w, msgStopping, http.StatusServiceUnavailable)
		return
	}
	defer s.requestsWG.Done()
	start := s.cfg.Now()
	st := s.state.Load()
	rw := &responseWriter{ResponseWriter: w}
	route, ok := st.table.Match(r.Host, r.URL.Path)
	var rs *routeState
	if ok {
		rs = st.routes[route]
	}
	switch v, code, msg := decide(rs, r.Method == http.MethodConnect, r.TLS == nil); v {
	case refuse:
		http.Error(rw, msg, code)
	case toHTTPS:
		http.Redirect(rw, r, s.httpsURL(r.Host, r.URL.RequestURI()), http.StatusPermanentRedirect)
	default:
		rs.proxy.ServeHTTP(rw, r)
	}
	end := s.cfg.Now()
	code := rw.code
	if code == 0 {
		code = http.StatusOK // nothing written: net/http answers 200
	}
	if rs == nil {
		rs = st.unmatched
	}
	rs.observe(code, end.Sub(start))
	if s.access != nil {
		s.access.write(httpEntry(r, code, rw.bytes, end))
	}
}

// verdict is what becomes of a request before any endpoint is asked.
type verdict int

const (
	toEndpoint verdict = iota // proxied
	refuse                    // answered with an error
	toHTTPS                   // redirected to HTTPS
)

// decide judges a request by the route it matched (rs nil: none), both
// for net/http and for fasthttp; a refusal comes with its status and
// message.
func decide(rs *routeState, connect, plain bool) (v verdict, code int, msg string) {
	switch {
	case connect:
		return refuse, http.StatusMethodNotAllowed, "405 method not allowed"
	case rs == nil:
		return refuse, http.StatusNotFound, "404 not found: no route for this host and path"
	}
	b := rs.route.Backend
	switch {
	case plain && rs.route.SSLRedirect:
		return toHTTPS, 0, ""
	case b.Unavailable != "":
		return refuse, http.StatusServiceUnavailable, "503 service unavailable: " + b.Unavailable
	case len(b.Endpoints) == 0:
		return refuse, http.StatusServiceUnavailable, "503 service unavailable: no ready endpoint for service " + b.Service.String() + " port " + b.Port
	}
	return toEndpoint, 0, ""
}

// msgStopping is the answer to requests that come while the proxy stops.
const msgStopping = "503 service unavailable: the proxy is stopping"

// httpsURL is where a plain HTTP request for host and requestURI is
// redirected: the same on the HTTPS port.
func (s *Server) httpsURL(host, requestURI string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if p := s.cfg.HTTPSPort; p != 0 && p != 443 {
		host = net.JoinHostPort(host, strconv.Itoa(p))
	}
	return "https://" + host + requestURI
}
