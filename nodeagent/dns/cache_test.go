package dns

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func mustRR(t testing.TB, s string) dns.RR {
	t.Helper()
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("NewRR(%q): %v", s, err)
	}
	return rr
}

func msgWith(t testing.TB, rcode int, answer, ns []string) *dns.Msg {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion("example.com.", dns.TypeA)
	m.Response, m.Rcode = true, rcode
	for _, s := range answer {
		m.Answer = append(m.Answer, mustRR(t, s))
	}
	for _, s := range ns {
		m.Ns = append(m.Ns, mustRR(t, s))
	}
	return m
}

func ttls(m *dns.Msg) []uint32 {
	var out []uint32
	for _, sec := range [][]dns.RR{m.Answer, m.Ns} {
		for _, rr := range sec {
			out = append(out, rr.Header().Ttl)
		}
	}
	return out
}

func TestCacheTTL(t *testing.T) {
	const soaRR = "example.com. 300 IN SOA ns.example.com. h.example.com. 1 2 3 4 60"
	tests := []struct {
		name   string
		msg    func(t testing.TB) *dns.Msg
		want   time.Duration
		wantOK bool
	}{
		{"positive: smallest TTL", func(t testing.TB) *dns.Msg {
			return msgWith(t, dns.RcodeSuccess, []string{"example.com. 60 IN A 192.0.2.1", "example.com. 30 IN A 192.0.2.2"}, nil)
		}, 30 * time.Second, true},
		{"positive: capped", func(t testing.TB) *dns.Msg {
			return msgWith(t, dns.RcodeSuccess, []string{"example.com. 86400 IN A 192.0.2.1"}, nil)
		}, time.Hour, true},
		{"positive: TTL 0", func(t testing.TB) *dns.Msg {
			return msgWith(t, dns.RcodeSuccess, []string{"example.com. 0 IN A 192.0.2.1"}, nil)
		}, 0, true},
		{"NXDOMAIN: SOA minimum", func(t testing.TB) *dns.Msg {
			return msgWith(t, dns.RcodeNameError, nil, []string{soaRR})
		}, 60 * time.Second, true},
		{"NXDOMAIN: SOA TTL when smaller", func(t testing.TB) *dns.Msg {
			return msgWith(t, dns.RcodeNameError, nil, []string{"example.com. 10 IN SOA ns.example.com. h.example.com. 1 2 3 4 60"})
		}, 10 * time.Second, true},
		{"no data: SOA minimum", func(t testing.TB) *dns.Msg {
			return msgWith(t, dns.RcodeSuccess, nil, []string{soaRR})
		}, 60 * time.Second, true},
		{"NXDOMAIN without SOA", func(t testing.TB) *dns.Msg {
			return msgWith(t, dns.RcodeNameError, nil, nil)
		}, 0, false},
		{"SERVFAIL", func(t testing.TB) *dns.Msg {
			return msgWith(t, dns.RcodeServerFailure, nil, []string{soaRR})
		}, 0, false},
		{"truncated", func(t testing.TB) *dns.Msg {
			m := msgWith(t, dns.RcodeSuccess, []string{"example.com. 60 IN A 192.0.2.1"}, nil)
			m.Truncated = true
			return m
		}, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := cacheTTL(tt.msg(t))
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("cacheTTL = %v, %v; want %v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestCacheAgesAndExpires(t *testing.T) {
	c := newCache(10)
	t0 := time.Unix(1_000_000, 0)
	k := cacheKey{name: "example.com.", qtype: dns.TypeA, qclass: dns.ClassINET}
	c.put(k, msgWith(t, dns.RcodeSuccess, []string{"example.com. 60 IN A 192.0.2.1", "example.com. 30 IN A 192.0.2.2"}, nil), t0)

	steps := []struct {
		after time.Duration
		want  []uint32 // nil: not in the cache
	}{
		{0, []uint32{60, 30}},
		{10*time.Second + 500*time.Millisecond, []uint32{50, 20}},
		{29 * time.Second, []uint32{31, 1}},
		{30 * time.Second, nil},
	}
	for _, s := range steps {
		m, ok := c.get(k, t0.Add(s.after))
		var got []uint32
		if ok {
			got = ttls(m)
		}
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("after %v: TTLs (-want +got):\n%s", s.after, diff)
		}
	}
	if n := c.len(); n != 0 {
		t.Errorf("expired entry still kept: %d entries", n)
	}
}

func TestCacheReturnsCopies(t *testing.T) {
	c := newCache(10)
	now := time.Unix(1_000_000, 0)
	k := cacheKey{name: "example.com.", qtype: dns.TypeA, qclass: dns.ClassINET}
	m := msgWith(t, dns.RcodeSuccess, []string{"example.com. 60 IN A 192.0.2.1"}, nil)
	c.put(k, m, now)
	m.Answer[0].Header().Ttl = 1 // the caller's message is not the cache's

	got, _ := c.get(k, now)
	got.Answer[0].Header().Ttl = 2
	got.Id = 7

	again, ok := c.get(k, now)
	if !ok || again.Answer[0].Header().Ttl != 60 || again.Id == 7 {
		t.Errorf("cache entry changed through a returned message: %v", again)
	}
}

func TestCacheKeysAndBound(t *testing.T) {
	c := newCache(3)
	now := time.Unix(1_000_000, 0)
	pos := msgWith(t, dns.RcodeSuccess, []string{"example.com. 60 IN A 192.0.2.1"}, nil)
	short := msgWith(t, dns.RcodeSuccess, []string{"example.com. 1 IN A 192.0.2.1"}, nil)

	c.put(cacheKey{name: "a.", qtype: dns.TypeA}, pos, now)
	c.put(cacheKey{name: "a.", qtype: dns.TypeAAAA}, pos, now)
	c.put(cacheKey{name: "b.", qtype: dns.TypeA}, short, now)
	if _, ok := c.get(cacheKey{name: "a.", qtype: dns.TypeA, do: true}, now); ok {
		t.Error("an answer without DNSSEC records served to a DO query")
	}
	// Full: the expired entry goes first.
	later := now.Add(2 * time.Second)
	c.put(cacheKey{name: "c.", qtype: dns.TypeA}, pos, later)
	for _, name := range []string{"a.", "c."} {
		if _, ok := c.get(cacheKey{name: name, qtype: dns.TypeA}, later); !ok {
			t.Errorf("%s evicted, want the expired b. evicted", name)
		}
	}
	// Full of live entries: one goes, the bound holds.
	for i := range 10 {
		c.put(cacheKey{name: fmt.Sprintf("n%d.", i), qtype: dns.TypeA}, pos, later)
		if n := c.len(); n > 3 {
			t.Fatalf("%d entries, want at most 3", n)
		}
	}
	if _, ok := c.get(cacheKey{name: "n9.", qtype: dns.TypeA}, later); !ok {
		t.Error("the newest entry is not kept")
	}

	off := newCache(-1)
	off.put(cacheKey{name: "a."}, pos, now)
	if _, ok := off.get(cacheKey{name: "a."}, now); ok {
		t.Error("a disabled cache returned an entry")
	}
}
