package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// ErrInvalidConfig is wrapped by the errors of New for a bad Config.
var ErrInvalidConfig = errors.New("invalid DNS server configuration")

// Config configures a Server.
type Config struct {
	// Addrs are the addresses to serve on, as "ip:port" ("10.88.0.1:53");
	// UDP and TCP listen on each. The address need not exist yet (see
	// Start). With port 0 a free port is chosen, the same for UDP and TCP;
	// Addrs tells which.
	Addrs []string
	// Domain is the cluster domain, DefaultDomain when empty.
	Domain string
	// ResolvConf is the file whose nameservers the other names are forwarded
	// to, DefaultResolvConf when empty. It is read again when it changes. When
	// it names no nameserver, 127.0.0.1 and ::1 are used, as by the C library.
	ResolvConf string
	// Upstreams, when set, are the servers to forward to ("ip" or "ip:port")
	// instead of those of ResolvConf.
	Upstreams []string
	// Log receives the server's messages; nil discards them.
	Log *slog.Logger

	// InsecurePods answers every well-formed 10-1-2-3.ns.pod.<zone> name, as
	// CoreDNS's "pods insecure" does, instead of only the pods of the view.
	InsecurePods bool
	// CacheSize is the number of upstream answers kept (DefaultCacheSize when
	// zero); a negative size turns the cache off.
	CacheSize int
	// Now is the clock of the cache and of the SOA serial; nil is time.Now.
	Now func() time.Time
}

// Server is a node's cluster DNS server. Its methods are safe for
// concurrent use. It owns its listeners and every goroutine it starts;
// Close releases them all.
type Server struct {
	log    *slog.Logger
	zone   string
	listen []netip.AddrPort
	pods   bool // insecure pods
	up     *upstreams
	fwd    *forwarder
	cache  *cache
	now    func() time.Time

	view     atomic.Pointer[view]
	updateMu sync.Mutex // serializes Update, which owns serial
	serial   uint32

	mu      sync.Mutex // guards what follows, and makes Start and Close exclusive
	started bool
	closed  bool
	bound   []netip.AddrPort
	servers []*dns.Server
	cancel  context.CancelFunc // cancels the queries in flight
	wg      sync.WaitGroup     // the servers' goroutines
}

// New checks cfg and returns a Server that answers from an empty view until
// Update gives it one. It does not listen yet: see Start.
func New(cfg Config) (*Server, error) {
	var errs []error
	if len(cfg.Addrs) == 0 {
		errs = append(errs, errors.New("no listen address (Addrs)"))
	}
	var listen []netip.AddrPort
	self := make(map[string]bool)
	for _, a := range cfg.Addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			errs = append(errs, fmt.Errorf("listen address %q: want ip:port", a))
			continue
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		listen = append(listen, ap)
		self[ap.String()] = true
	}
	domain := strings.Trim(strings.ToLower(cfg.Domain), ".")
	if domain == "" {
		domain = DefaultDomain
	}
	if _, ok := dns.IsDomainName(domain); !ok {
		errs = append(errs, fmt.Errorf("domain %q is not a domain name", cfg.Domain))
	}
	var fixed []string
	for _, u := range cfg.Upstreams {
		n, ok := normalizeUpstream(u)
		if !ok {
			errs = append(errs, fmt.Errorf("upstream %q: want ip or ip:port", u))
			continue
		}
		if self[n] {
			errs = append(errs, fmt.Errorf("upstream %q is the server itself", u))
			continue
		}
		fixed = append(fixed, n)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}

	path := cfg.ResolvConf
	if path == "" {
		path = DefaultResolvConf
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	cacheSize := cfg.CacheSize
	if cacheSize == 0 {
		cacheSize = DefaultCacheSize
	}
	s := &Server{
		log:    log,
		zone:   domain + ".",
		listen: listen,
		pods:   cfg.InsecurePods,
		up:     &upstreams{fixed: fixed, path: path, self: self},
		fwd:    newForwarder(upstreamTimeout, maxConcurrentForwards),
		cache:  newCache(cacheSize),
		now:    now,
	}
	s.Update(nil, nil)
	return s, nil
}

// Update replaces the whole view with svcs and pods. Queries see either the
// old view or the new one, whole. The slices are not kept.
func (s *Server) Update(svcs []Service, pods []Pod) {
	s.updateMu.Lock()
	defer s.updateMu.Unlock()
	// The SOA serial is the time of the update, and grows by one at least.
	serial := uint32(s.now().Unix())
	if serial <= s.serial {
		serial = s.serial + 1
	}
	s.serial = serial
	nsAddrs := make([]netip.Addr, 0, len(s.listen))
	for _, ap := range s.listen {
		nsAddrs = append(nsAddrs, ap.Addr())
	}
	s.view.Store(newView(viewOptions{
		zone:         s.zone,
		serial:       serial,
		insecurePods: s.pods,
		nsAddrs:      nsAddrs,
	}, svcs, pods))
}

// Start listens on every address of the Config, UDP and TCP, and returns once
// all of them serve, or with the first error (and nothing left listening).
// Sockets are bound with IP_FREEBIND, so an address the node does not have
// yet is served as soon as it appears. ctx bounds the start only, as it does
// for net.ListenConfig.Listen; the server runs until Close.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("dns server: start after close")
	}
	if s.started {
		return errors.New("dns server: already started")
	}

	lc := net.ListenConfig{Control: freebind}
	var (
		pcs   []net.PacketConn
		lns   []net.Listener
		bound []netip.AddrPort
	)
	closeAll := func() {
		for _, pc := range pcs {
			_ = pc.Close()
		}
		for _, ln := range lns {
			_ = ln.Close()
		}
	}
	for _, ap := range s.listen {
		pc, ln, err := listenBoth(ctx, lc, ap)
		if err != nil {
			closeAll()
			return fmt.Errorf("dns server: listen on %s: %w", ap, err)
		}
		pcs, lns = append(pcs, pc), append(lns, ln)
		bound = append(bound, netip.AddrPortFrom(ap.Addr(), uint16(ln.Addr().(*net.TCPAddr).Port)))
	}

	runCtx, cancel := context.WithCancel(context.Background())
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		s.serveDNS(runCtx, w, req)
	})
	var servers []*dns.Server
	for i := range pcs {
		servers = append(servers,
			&dns.Server{PacketConn: pcs[i], Handler: handler, UDPSize: 4096},
			&dns.Server{Listener: lns[i], Handler: handler})
	}
	var started []*dns.Server
	for _, srv := range servers {
		ready := make(chan struct{})
		failed := make(chan error, 1)
		srv.NotifyStartedFunc = func() { close(ready) }
		s.wg.Go(func() {
			if err := srv.ActivateAndServe(); err != nil {
				select {
				case <-ready: // it served, then failed: nobody else hears of it
					s.log.Error("dns server stopped", "addr", serverAddr(srv), "err", err)
				default: // Start returns the error
					failed <- err
				}
			}
		})
		select {
		case <-ready:
			started = append(started, srv)
		case err := <-failed:
			cancel()
			for _, st := range started {
				_ = st.Shutdown()
			}
			closeAll()
			s.wg.Wait()
			return fmt.Errorf("dns server: serve on %s: %w", serverAddr(srv), err)
		}
	}

	s.started, s.bound, s.servers, s.cancel = true, bound, servers, cancel
	s.log.Info("dns server listening", "addrs", bound, "domain", strings.TrimSuffix(s.zone, "."))
	return nil
}

// listenBoth opens the UDP and TCP sockets of one address. With port 0 it
// takes the port the kernel gives the TCP socket and, if UDP has that port
// taken, tries again.
func listenBoth(ctx context.Context, lc net.ListenConfig, ap netip.AddrPort) (net.PacketConn, net.Listener, error) {
	const attempts = 20
	for i := 0; ; i++ {
		ln, err := lc.Listen(ctx, "tcp", ap.String())
		if err != nil {
			return nil, nil, err
		}
		port := uint16(ln.Addr().(*net.TCPAddr).Port)
		pc, err := lc.ListenPacket(ctx, "udp", netip.AddrPortFrom(ap.Addr(), port).String())
		if err == nil {
			return pc, ln, nil
		}
		_ = ln.Close()
		if ap.Port() != 0 || !errors.Is(err, syscall.EADDRINUSE) || i == attempts-1 {
			return nil, nil, err
		}
	}
}

func serverAddr(srv *dns.Server) string {
	if srv.PacketConn != nil {
		return "udp " + srv.PacketConn.LocalAddr().String()
	}
	return "tcp " + srv.Listener.Addr().String()
}

// Addrs returns the addresses served on: after Start, with the ports chosen
// for port 0; before, as configured.
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bound != nil {
		return append([]netip.AddrPort(nil), s.bound...)
	}
	return append([]netip.AddrPort(nil), s.listen...)
}

// Close stops the listeners, cancels the forwards in flight and waits until
// every goroutine of the server has returned. It may be called more than
// once, and without Start.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if !s.started {
		return nil
	}
	s.cancel()
	var errs []error
	for _, srv := range s.servers {
		if err := srv.Shutdown(); err != nil {
			errs = append(errs, fmt.Errorf("dns server: stop %s: %w", serverAddr(srv), err))
		}
	}
	s.wg.Wait()
	return errors.Join(errs...)
}

// serveDNS answers one query; ctx ends with the server.
func (s *Server) serveDNS(ctx context.Context, w dns.ResponseWriter, req *dns.Msg) {
	resp := s.respond(ctx, req)
	_, udp := w.LocalAddr().(*net.UDPAddr)
	fit(resp, req, udp)
	if err := w.WriteMsg(resp); err != nil {
		s.log.Debug("dns: write answer", "client", w.RemoteAddr(), "err", err)
	}
}

// respond makes the answer to req: from the view for the cluster's names,
// from the upstreams (through the cache) for the others.
func (s *Server) respond(ctx context.Context, req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	if req.Opcode != dns.OpcodeQuery {
		return m.SetRcode(req, dns.RcodeNotImplemented)
	}
	if len(req.Question) != 1 {
		return m.SetRcodeFormatError(req)
	}
	q := req.Question[0]
	if q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR {
		return m.SetRcode(req, dns.RcodeRefused) // no zone transfers
	}
	do := false
	if opt := req.IsEdns0(); opt != nil {
		do = opt.Do()
	}

	if r := s.view.Load().lookup(q); r.handled {
		m.SetReply(req)
		m.Authoritative, m.RecursionAvailable = true, true
		m.Rcode, m.Answer, m.Ns, m.Extra = r.rcode, r.answer, r.ns, r.extra
		if r.chase != "" {
			// An ExternalName: what its target is comes from upstream.
			up, err := s.resolve(ctx, dns.Question{Name: r.chase, Qtype: q.Qtype, Qclass: dns.ClassINET}, do)
			if err != nil {
				if ctx.Err() == nil {
					s.log.Debug("dns: resolve CNAME target", "name", q.Name, "target", r.chase, "err", err)
				}
			} else {
				m.Rcode = up.Rcode
				m.Answer = append(m.Answer, up.Answer...)
				if len(up.Answer) == 0 {
					m.Ns = up.Ns
				}
			}
		}
		shuffleAddrs(m.Answer)
		return m
	}

	up, err := s.resolve(ctx, q, do)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Debug("dns: forward", "name", q.Name, "type", dns.TypeToString[q.Qtype], "err", err)
		}
		m.SetRcode(req, dns.RcodeServerFailure)
		m.RecursionAvailable = true
		return m
	}
	rcode := up.Rcode
	up.SetReply(req) // the client's ID, question (with its case) and flags
	up.Rcode = rcode
	up.Authoritative, up.RecursionAvailable, up.Truncated = false, true, false
	return up
}

// headerRcode keeps the rcodes that fit the header without EDNS(0); the
// extended ones (which upstream and client need not share) become SERVFAIL.
func headerRcode(rcode int) int {
	if rcode > 0xF {
		return dns.RcodeServerFailure
	}
	return rcode
}

// resolve asks q upstream, through the cache. The message returned is the
// caller's own; it has no OPT record.
func (s *Server) resolve(ctx context.Context, q dns.Question, do bool) (*dns.Msg, error) {
	key := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, qclass: q.Qclass, do: do}
	now := s.now()
	if m, ok := s.cache.get(key, now); ok {
		return m, nil
	}
	m, err := s.fwd.exchange(ctx, s.up.get(now), q, do)
	if err != nil {
		return nil, err
	}
	extra := m.Extra[:0]
	for _, rr := range m.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			extra = append(extra, rr)
		}
	}
	m.Extra = extra
	m.Rcode = headerRcode(m.Rcode)
	s.cache.put(key, m, s.now())
	return m, nil
}

// fit adds the OPT record the client's EDNS(0) asks for and makes the
// answer fit its transport: over UDP 512 bytes, or the client's EDNS(0)
// size; the TC bit tells the client to ask again over TCP.
func fit(m, req *dns.Msg, udp bool) {
	m.Compress = true
	size := dns.MaxMsgSize
	if opt := req.IsEdns0(); opt != nil {
		m.SetEdns0(ednsSize, opt.Do())
		if udp {
			size = int(opt.UDPSize())
		}
	} else if udp {
		size = dns.MinMsgSize
	}
	m.Truncate(size)
}

// shuffleAddrs shuffles the A and AAAA records that end an answer (after its
// CNAMEs), so that clients that take the first address spread over a
// headless service's endpoints.
func shuffleAddrs(rrs []dns.RR) {
	i := len(rrs)
	for i > 0 {
		t := rrs[i-1].Header().Rrtype
		if t != dns.TypeA && t != dns.TypeAAAA {
			break
		}
		i--
	}
	tail := rrs[i:]
	if len(tail) > 1 {
		rand.Shuffle(len(tail), func(a, b int) { tail[a], tail[b] = tail[b], tail[a] })
	}
}
