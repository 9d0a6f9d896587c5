package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// upstreamTimeout bounds one exchange with one upstream (UDP and its TCP
// retry together).
const upstreamTimeout = 2 * time.Second

// ednsSize is the EDNS(0) buffer size the server offers, to clients and to
// upstreams: the size that avoids IP fragmentation (DNS flag day 2020).
const ednsSize = 1232

// maxConcurrentForwards bounds the queries being forwarded at once, as
// CoreDNS's forward plugin is configured in Kubernetes (max_concurrent
// 1000): when the upstreams stop answering, each waiting query holds a
// goroutine for up to upstreamTimeout per upstream, and the agent's memory
// must stay bounded. Queries beyond it get SERVFAIL at once.
const maxConcurrentForwards = 1000

var (
	// errNoUpstream is returned when there is no upstream to ask.
	errNoUpstream = errors.New("no upstream resolver")
	// errTooManyForwards is returned when maxConcurrentForwards are in flight.
	errTooManyForwards = errors.New("too many queries forwarded at once")
)

// forwarder asks upstream resolvers, one after the other, starting with the
// last one that answered. It is safe for concurrent use and starts no
// goroutine that outlives a call.
type forwarder struct {
	timeout   time.Duration
	inflight  chan struct{} // one token per query being forwarded
	preferred atomic.Uint32 // index of the last upstream that answered
}

func newForwarder(timeout time.Duration, maxInflight int) *forwarder {
	return &forwarder{timeout: timeout, inflight: make(chan struct{}, maxInflight)}
}

// exchange asks q of the servers and returns the first usable answer: a
// SERVFAIL or REFUSED answer, or no answer, makes it ask the next server. It
// returns the last such answer when no server gives a better one.
func (f *forwarder) exchange(ctx context.Context, servers []string, q dns.Question, do bool) (*dns.Msg, error) {
	if len(servers) == 0 {
		return nil, errNoUpstream
	}
	select {
	case f.inflight <- struct{}{}:
		defer func() { <-f.inflight }()
	default:
		return nil, errTooManyForwards
	}
	req := new(dns.Msg)
	req.Id = dns.Id()
	req.RecursionDesired = true
	req.Question = []dns.Question{q}
	req.SetEdns0(ednsSize, do)

	start := int(f.preferred.Load()) % len(servers)
	var (
		errs []error
		last *dns.Msg
	)
	for i := range servers {
		idx := (start + i) % len(servers)
		resp, err := f.ask(ctx, servers[idx], req)
		if err != nil {
			errs = append(errs, fmt.Errorf("upstream %s: %w", servers[idx], err))
			if ctx.Err() != nil {
				break
			}
			continue
		}
		if resp.Rcode == dns.RcodeServerFailure || resp.Rcode == dns.RcodeRefused {
			last = resp
			continue
		}
		f.preferred.Store(uint32(idx))
		return resp, nil
	}
	if last != nil {
		return last, nil
	}
	return nil, errors.Join(errs...)
}

// ask sends req to one server over UDP, and again over TCP if the answer
// was truncated.
func (f *forwarder) ask(ctx context.Context, server string, req *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	resp, err := exchangeOnce(ctx, "udp", server, req)
	if err == nil && resp.Truncated {
		resp, err = exchangeOnce(ctx, "tcp", server, req)
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Question) != 1 || !strings.EqualFold(resp.Question[0].Name, req.Question[0].Name) ||
		resp.Question[0].Qtype != req.Question[0].Qtype {
		return nil, fmt.Errorf("answer to another question: %v", resp.Question)
	}
	return resp, nil
}

// exchangeOnce is one exchange over one connection. The connection's
// deadline ends it when ctx is cancelled, which the client library does not
// watch by itself.
func exchangeOnce(ctx context.Context, network, server string, req *dns.Msg) (*dns.Msg, error) {
	c := &dns.Client{Net: network, Timeout: upstreamTimeout}
	co, err := c.DialContext(ctx, server)
	if err != nil {
		return nil, err
	}
	defer co.Close()
	stop := context.AfterFunc(ctx, func() { _ = co.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	resp, _, err := c.ExchangeWithConnContext(ctx, req, co)
	if err != nil && ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return resp, err
}
