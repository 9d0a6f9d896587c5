package dns

import (
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Bounds of the TTL an upstream answer is kept for, as CoreDNS's cache
// plugin has by default.
const (
	maxPositiveTTL = time.Hour
	maxNegativeTTL = 30 * time.Minute
)

// DefaultCacheSize is the number of upstream answers kept when
// Config.CacheSize is zero.
const DefaultCacheSize = 10000

// cacheKey identifies an upstream answer: the lower-case name, type and
// class of the question, and whether DNSSEC records were asked for.
type cacheKey struct {
	name   string
	qtype  uint16
	qclass uint16
	do     bool
}

type cacheEntry struct {
	msg     *dns.Msg
	stored  time.Time
	expires time.Time
}

// cache keeps upstream answers for their TTL: positive answers for the
// smallest TTL of their records, negative ones (NXDOMAIN, or no data) for
// their SOA's negative TTL (RFC 2308); other answers are not kept. The time
// is always an argument, so tests need no clock. It is safe for concurrent
// use; a nil *cache keeps nothing.
type cache struct {
	max int

	mu      sync.Mutex
	entries map[cacheKey]cacheEntry
}

func newCache(size int) *cache {
	if size <= 0 {
		return nil
	}
	return &cache{max: size, entries: make(map[cacheKey]cacheEntry)}
}

// get returns a copy of the answer kept for k, its TTLs lowered by the time
// it has been kept.
func (c *cache) get(k cacheKey, now time.Time) (*dns.Msg, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	e, ok := c.entries[k]
	if ok && !now.Before(e.expires) {
		delete(c.entries, k)
		ok = false
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	m := e.msg.Copy()
	age := uint32(max(0, now.Sub(e.stored)/time.Second))
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT {
				h.Ttl -= min(h.Ttl, age)
			}
		}
	}
	return m, true
}

// put keeps a copy of m under k if it may be kept.
func (c *cache) put(k cacheKey, m *dns.Msg, now time.Time) {
	if c == nil {
		return
	}
	d, ok := cacheTTL(m)
	if !ok || d <= 0 {
		return
	}
	e := cacheEntry{msg: m.Copy(), stored: now, expires: now.Add(d)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		c.evict(now)
	}
	c.entries[k] = e
}

// evict makes room for one entry: it drops the expired entries, or else one
// arbitrary entry (map order is random enough for this small cache).
func (c *cache) evict(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	if len(c.entries) < c.max {
		return
	}
	for k := range c.entries {
		delete(c.entries, k)
		return
	}
}

// len returns the number of entries, expired ones included.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// cacheTTL returns how long m may be kept, and false if it may not.
func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated {
		return 0, false
	}
	switch {
	case m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0:
		least := uint32(1<<32 - 1)
		for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
			for _, rr := range sec {
				least = min(least, rr.Header().Ttl)
			}
		}
		return min(time.Duration(least)*time.Second, maxPositiveTTL), true
	case m.Rcode == dns.RcodeNameError || m.Rcode == dns.RcodeSuccess:
		for _, rr := range m.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				neg := min(soa.Hdr.Ttl, soa.Minttl)
				return min(time.Duration(neg)*time.Second, maxNegativeTTL), true
			}
		}
	}
	return 0, false
}
