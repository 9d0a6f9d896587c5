package ebpf

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAssignSlots(t *testing.T) {
	for _, tc := range []struct {
		name      string
		old, want []uint32
		out       []uint32
	}{
		{"empty", nil, nil, []uint32{}},
		{"first", nil, []uint32{1, 2, 3}, []uint32{1, 2, 3}},
		{"same", []uint32{1, 2, 3}, []uint32{3, 1, 2}, []uint32{1, 2, 3}},
		{"append", []uint32{1, 2}, []uint32{1, 2, 3}, []uint32{1, 2, 3}},
		{"fill hole", []uint32{1, 2, 3}, []uint32{1, 4, 3}, []uint32{1, 4, 3}},
		{"last moves into hole", []uint32{1, 2, 3, 4}, []uint32{1, 3, 4}, []uint32{1, 4, 3}},
		{"remove last", []uint32{1, 2, 3}, []uint32{1, 2}, []uint32{1, 2}},
		{"remove two", []uint32{1, 2, 3, 4, 5}, []uint32{1, 3, 5}, []uint32{1, 5, 3}},
		{"remove tail and hole", []uint32{1, 2, 3, 4}, []uint32{1, 3}, []uint32{1, 3}},
		{"all gone", []uint32{1, 2}, nil, []uint32{}},
		{"all new", []uint32{1, 2}, []uint32{7, 8, 9}, []uint32{7, 8, 9}},
		{"stale zero slot", []uint32{1, 0, 3}, []uint32{1, 3}, []uint32{1, 3}},
		{"duplicate in old", []uint32{1, 1, 2}, []uint32{1, 2}, []uint32{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := assignSlots(tc.old, tc.want)
			if diff := cmp.Diff(tc.out, got); diff != "" {
				t.Errorf("assignSlots(%v, %v) (-want +got):\n%s", tc.old, tc.want, diff)
			}
		})
	}
}

func TestIDAlloc(t *testing.T) {
	a := newIDAlloc()
	var got []uint32
	for range 3 {
		id, err := a.get()
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, id)
	}
	if diff := cmp.Diff([]uint32{1, 2, 3}, got); diff != "" {
		t.Errorf("first IDs (-want +got):\n%s", diff)
	}
	// A freed ID is not handed out again before the others.
	a.put(2)
	if id, _ := a.get(); id != 4 {
		t.Errorf("after freeing 2 got %d, want 4", id)
	}
	// IDs found in the maps move the next one past them.
	a.take(10)
	if id, _ := a.get(); id != 11 {
		t.Errorf("after taking 10 got %d, want 11", id)
	}
	// Wrapping skips 0 and the used ones.
	a.next = math.MaxUint32
	id1, _ := a.get()
	id2, _ := a.get()
	if id1 != math.MaxUint32 || id2 != 2 {
		t.Errorf("wrap: got %d, %d; want %d, 2", id1, id2, uint32(math.MaxUint32))
	}
}

// fakeMaps applies plans the way LB.apply does, to Go maps.
type fakeMaps struct {
	svcs  map[lbLb4Key]lbLb4Service
	bes   map[uint32]lbLb4Backend
	names map[uint32]lbLb4Name
}

func newFakeMaps() *fakeMaps {
	return &fakeMaps{svcs: map[lbLb4Key]lbLb4Service{}, bes: map[uint32]lbLb4Backend{}, names: map[uint32]lbLb4Name{}}
}

// apply makes the plan's steps, calling after() after each one.
func (f *fakeMaps) apply(p *plan, after func(step)) {
	for _, s := range p.steps() {
		switch s.m {
		case mapServices:
			keys := s.keys.([]lbLb4Key)
			for i, k := range keys {
				if s.del {
					delete(f.svcs, k)
				} else {
					f.svcs[k] = s.vals.([]lbLb4Service)[i]
				}
			}
		case mapBackends:
			for i, k := range s.keys.([]uint32) {
				if s.del {
					delete(f.bes, k)
				} else {
					f.bes[k] = s.vals.([]lbLb4Backend)[i]
				}
			}
		case mapNames:
			for i, k := range s.keys.([]uint32) {
				if s.del {
					delete(f.names, k)
				} else {
					f.names[k] = s.vals.([]lbLb4Name)[i]
				}
			}
		}
		if after != nil {
			after(s)
		}
	}
}

func (f *fakeMaps) contents() *mapContents {
	var mc mapContents
	for _, k := range slices.SortedFunc(maps.Keys(f.svcs), cmpKey) {
		mc.svcKeys = append(mc.svcKeys, k)
		mc.svcVals = append(mc.svcVals, f.svcs[k])
	}
	for _, k := range slices.Sorted(maps.Keys(f.bes)) {
		mc.beKeys = append(mc.beKeys, k)
		mc.beVals = append(mc.beVals, f.bes[k])
	}
	for _, k := range slices.Sorted(maps.Keys(f.names)) {
		mc.nameKeys = append(mc.nameKeys, k)
		mc.nameVals = append(mc.nameVals, f.names[k])
	}
	return &mc
}

// checkDatapath returns what the BPF programs would trip over: a master
// whose count covers a missing slot, or a slot naming a missing backend or
// one of another service.
func (f *fakeMaps) checkDatapath() error {
	for k, v := range f.svcs {
		fe, slot, scope := decodeKey(k)
		if slot != 0 || scope != scopeAll {
			continue
		}
		for _, sc := range []struct {
			scope uint8
			count uint16
		}{{scopeAll, v.Count}, {scopeLocal, v.LocalCount}} {
			for i := uint16(1); i <= sc.count; i++ {
				s, ok := f.svcs[fe.key(i, sc.scope)]
				if !ok {
					return fmt.Errorf("%s: slot %d of scope %d missing (count %d)", fe, i, sc.scope, sc.count)
				}
				if s.SvcId != v.SvcId {
					return fmt.Errorf("%s: slot %d of scope %d has service %d, want %d", fe, i, sc.scope, s.SvcId, v.SvcId)
				}
				be, ok := f.bes[s.BackendId]
				if !ok || be.SvcId != v.SvcId {
					return fmt.Errorf("%s: slot %d of scope %d names backend %d, missing or of another service", fe, i, sc.scope, s.BackendId)
				}
			}
		}
	}
	return nil
}

// render describes a plan's steps, one line per entry.
func render(p *plan) []string {
	var out []string
	for _, s := range p.steps() {
		switch keys := s.keys.(type) {
		case []lbLb4Key:
			for i, k := range keys {
				line := s.what + " " + describeKey(k)
				if !s.del {
					v := s.vals.([]lbLb4Service)[i]
					if _, slot, scope := decodeKey(k); slot == 0 && scope == scopeAll {
						line += fmt.Sprintf(" id=%d count=%d local=%d flags=%d affinity=%d", v.SvcId, v.Count, v.LocalCount, v.Flags, v.AffinityTimeout)
					} else {
						line += fmt.Sprintf(" -> %d", v.BackendId)
					}
				}
				out = append(out, line)
			}
		case []uint32:
			for i, k := range keys {
				line := fmt.Sprintf("%s %d", s.what, k)
				if !s.del {
					switch vals := s.vals.(type) {
					case []lbLb4Backend:
						b := decodeBackend(k, vals[i])
						line += fmt.Sprintf(" = %s flags=%d svc=%d", b.addr, b.flags, vals[i].SvcId)
					case []lbLb4Name:
						line += fmt.Sprintf(" = %q", decodeName(vals[i]))
					}
				}
				out = append(out, line)
			}
		}
	}
	return out
}

func describeKey(k lbLb4Key) string {
	fe, slot, scope := decodeKey(k)
	switch {
	case slot == 0 && scope == scopeAll:
		return fe.String()
	case scope == scopeLocal:
		return fmt.Sprintf("%s local#%d", fe, slot)
	}
	return fmt.Sprintf("%s #%d", fe, slot)
}

// harness runs the pure core of Sync against fake maps.
type harness struct {
	t     *testing.T
	st    *state
	maps  *fakeMaps
	local []netip.Prefix
}

func newHarness(t *testing.T) *harness {
	return &harness{t: t, st: newState(), maps: newFakeMaps(), local: []netip.Prefix{netip.MustParsePrefix("10.202.0.0/29")}}
}

// sync plans and applies svcs, checking the data path after every step,
// and returns the plan.
func (h *harness) sync(svcs []Service) *plan {
	h.t.Helper()
	if err := validate(svcs); err != nil {
		h.t.Fatal(err)
	}
	changes, err := h.st.diff(svcs, h.local)
	if err != nil {
		h.t.Fatal(err)
	}
	p := planFor(h.st, changes)
	h.maps.apply(p, func(s step) {
		if err := h.maps.checkDatapath(); err != nil {
			h.t.Fatalf("after %q: %v", s.what, err)
		}
	})
	h.st.commit(changes)
	return p
}

var (
	feWeb = netip.MustParseAddr("10.200.0.10")
	feDNS = netip.MustParseAddr("10.200.0.53")
)

func be(ip string, port uint16) Backend { return Backend{IP: netip.MustParseAddr(ip), Port: port} }

func TestDiffPlan(t *testing.T) {
	h := newHarness(t)
	web := Service{Name: "default/web:http", Addr: feWeb, Port: 80, Protocol: TCP,
		Backends: []Backend{be("10.202.0.2", 8080), be("10.202.0.3", 8080), be("10.202.1.4", 8080)}}
	steps := []struct {
		name string
		svcs func() []Service
		want []string
	}{
		{"new service", func() []Service { return []Service{web} }, []string{
			"write backends 1 = 10.202.0.2:8080 flags=1 svc=1",
			"write backends 2 = 10.202.0.3:8080 flags=1 svc=1",
			"write backends 3 = 10.202.1.4:8080 flags=0 svc=1",
			"write slots 10.200.0.10:80/TCP #1 -> 1",
			"write slots 10.200.0.10:80/TCP #2 -> 2",
			"write slots 10.200.0.10:80/TCP #3 -> 3",
			"write services 10.200.0.10:80/TCP id=1 count=3 local=0 flags=0 affinity=0",
			`write names 1 = "default/web:http"`,
		}},
		{"nothing changed", func() []Service { return []Service{web} }, nil},
		{"order does not matter for slots", func() []Service {
			s := web
			s.Backends = []Backend{web.Backends[2], web.Backends[0], web.Backends[1]}
			return []Service{s}
		}, nil},
		{"remove first backend: last moves into its slot", func() []Service {
			s := web
			s.Backends = web.Backends[1:]
			return []Service{s}
		}, []string{
			"write slots 10.200.0.10:80/TCP #1 -> 3",
			"write services 10.200.0.10:80/TCP id=1 count=2 local=0 flags=0 affinity=0",
			"delete slots 10.200.0.10:80/TCP #3",
			"delete backends 1",
		}},
		{"add it back with a new ID", func() []Service { return []Service{web} }, []string{
			"write backends 4 = 10.202.0.2:8080 flags=1 svc=1",
			"write slots 10.200.0.10:80/TCP #3 -> 4",
			"write services 10.200.0.10:80/TCP id=1 count=3 local=0 flags=0 affinity=0",
		}},
		{"terminating leaves the slots, not the backends", func() []Service {
			s := web
			s.Backends = slices.Clone(web.Backends)
			s.Backends[1].Terminating = true
			return []Service{s}
		}, []string{
			"write backends 2 = 10.202.0.3:8080 flags=3 svc=1",
			"write slots 10.200.0.10:80/TCP #2 -> 4",
			"write services 10.200.0.10:80/TCP id=1 count=2 local=0 flags=0 affinity=0",
			"delete slots 10.200.0.10:80/TCP #3",
		}},
		{"external, local only, affinity", func() []Service {
			s := web
			s.Backends = slices.Clone(web.Backends)
			s.External, s.LocalOnly, s.AffinityTimeout = true, true, 1500*time.Millisecond
			return []Service{s}
		}, []string{
			"write backends 2 = 10.202.0.3:8080 flags=1 svc=1",
			"write slots 10.200.0.10:80/TCP #3 -> 2",
			"write slots 10.200.0.10:80/TCP local#1 -> 4",
			"write slots 10.200.0.10:80/TCP local#2 -> 2",
			"write services 10.200.0.10:80/TCP id=1 count=3 local=2 flags=3 affinity=2",
		}},
		{"no backends", func() []Service {
			s := web
			s.Backends = nil
			s.Name = ""
			return []Service{s}
		}, []string{
			"write services 10.200.0.10:80/TCP id=1 count=0 local=0 flags=0 affinity=0",
			"delete slots 10.200.0.10:80/TCP #1",
			"delete slots 10.200.0.10:80/TCP #2",
			"delete slots 10.200.0.10:80/TCP #3",
			"delete slots 10.200.0.10:80/TCP local#1",
			"delete slots 10.200.0.10:80/TCP local#2",
			"delete backends 4", "delete backends 2", "delete backends 3",
			"delete names 1",
		}},
		{"replace by another service", func() []Service {
			return []Service{{Name: "kube-system/dns:udp", Addr: feDNS, Port: 53, Protocol: UDP,
				Backends: []Backend{be("10.202.0.5", 53)}}}
		}, []string{
			"write backends 5 = 10.202.0.5:53 flags=1 svc=2",
			"write slots 10.200.0.53:53/UDP #1 -> 5",
			"write services 10.200.0.53:53/UDP id=2 count=1 local=0 flags=0 affinity=0",
			`write names 2 = "kube-system/dns:udp"`,
			"delete services 10.200.0.10:80/TCP",
		}},
		{"remove all", func() []Service { return nil }, []string{
			"delete services 10.200.0.53:53/UDP",
			"delete slots 10.200.0.53:53/UDP #1",
			"delete backends 5",
			"delete names 2",
		}},
	}
	for _, s := range steps {
		got := render(h.sync(s.svcs()))
		if diff := cmp.Diff(s.want, got); diff != "" {
			t.Errorf("%s: plan (-want +got):\n%s", s.name, diff)
		}
	}
	if n := len(h.maps.svcs) + len(h.maps.bes) + len(h.maps.names); n != 0 {
		t.Errorf("%d entries left after removing everything", n)
	}
}

// normalize returns svcs as Services reads them back.
func normalize(svcs []Service) []Service {
	out := make([]Service, 0, len(svcs))
	for _, s := range svcs {
		s.Name = truncName(s.Name)
		s.Addr = s.Addr.Unmap()
		s.AffinityTimeout = time.Duration(affinitySeconds(s.AffinityTimeout)) * time.Second
		bes := make([]Backend, 0, len(s.Backends))
		for _, b := range s.Backends {
			b.IP = b.IP.Unmap()
			bes = append(bes, b)
		}
		slices.SortFunc(bes, func(a, b Backend) int {
			return cmpBeAddr(beAddr{a.IP.As4(), a.Port}, beAddr{b.IP.As4(), b.Port})
		})
		if len(bes) == 0 {
			bes = nil
		}
		s.Backends = bes
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b Service) int { return cmpFrontend(frontendOf(&a), frontendOf(&b)) })
	return out
}

// Random service sets, synced one after the other: the maps always hold
// exactly the last set, the data path is consistent after every batch, and
// a repeated Sync writes nothing.
func TestSyncRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := newHarness(t)
	frontends := []netip.Addr{feWeb, feDNS, netip.MustParseAddr("10.200.1.1"), netip.MustParseAddr("192.0.2.10")}
	backends := []string{"10.202.0.2", "10.202.0.3", "10.202.0.4", "10.202.5.2", "10.202.5.3", "10.202.5.4"}
	for round := range 400 {
		var svcs []Service
		for _, fe := range frontends {
			for _, proto := range []Protocol{TCP, UDP} {
				if rng.IntN(3) == 0 {
					continue
				}
				s := Service{
					Name:      []string{"", "a/b:c", strings.Repeat("n", 80)}[rng.IntN(3)],
					Addr:      fe,
					Port:      uint16(80 + rng.IntN(2)),
					Protocol:  proto,
					External:  rng.IntN(2) == 0,
					LocalOnly: rng.IntN(2) == 0,
				}
				if rng.IntN(2) == 0 {
					s.AffinityTimeout = time.Duration(rng.IntN(3)) * time.Second
				}
				for _, i := range rng.Perm(len(backends))[:rng.IntN(len(backends)+1)] {
					s.Backends = append(s.Backends, Backend{IP: netip.MustParseAddr(backends[i]), Port: 8080, Terminating: rng.IntN(4) == 0})
				}
				svcs = append(svcs, s)
			}
		}
		h.sync(svcs)
		want := normalize(svcs)
		got := decodeState(h.maps.contents()).services()
		if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Fatalf("round %d: maps hold (-want +got):\n%s", round, diff)
		}
		if diff := cmp.Diff(want, h.st.services(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Fatalf("round %d: state holds (-want +got):\n%s", round, diff)
		}
		if p := h.sync(svcs); p.writes() != 0 {
			t.Fatalf("round %d: repeated sync writes %v", round, render(p))
		}
	}
}

// An agent that died in the middle of a Sync leaves entries that belong to
// nothing; the state read back marks them, and the next Sync deletes them.
func TestDecodeStrays(t *testing.T) {
	web := frontend{feWeb.As4(), 80, TCP}
	gone := frontend{feDNS.As4(), 53, UDP}
	f := newFakeMaps()
	f.svcs[web.key(0, scopeAll)] = lbLb4Service{SvcId: 1, Count: 2}
	f.svcs[web.key(1, scopeAll)] = slotValue(1, 10)
	f.svcs[web.key(2, scopeAll)] = slotValue(1, 11)
	f.svcs[web.key(3, scopeAll)] = slotValue(1, 12)   // beyond the count
	f.svcs[web.key(1, scopeLocal)] = slotValue(1, 10) // local count is 0
	f.svcs[gone.key(1, scopeAll)] = slotValue(7, 13)  // no master
	dup := frontend{feWeb.As4(), 81, TCP}
	f.svcs[dup.key(0, scopeAll)] = lbLb4Service{SvcId: 1} // an ID taken by another master
	for id, addr := range map[uint32]string{10: "10.202.0.2", 11: "10.202.0.3", 12: "10.202.0.4"} {
		f.bes[id] = backendValue(beEntry{addr: beAddr{netip.MustParseAddr(addr).As4(), 8080}}, 1)
	}
	f.bes[13] = backendValue(beEntry{addr: beAddr{netip.MustParseAddr("10.202.0.9").As4(), 53}}, 7)
	f.names[1] = nameValue("default/web")
	f.names[7] = nameValue("gone")

	st := decodeState(f.contents())
	if diff := cmp.Diff([]string{
		describeKey(web.key(3, scopeAll)),
		describeKey(web.key(1, scopeLocal)),
		describeKey(dup.key(0, scopeAll)),
		describeKey(gone.key(1, scopeAll)),
	}, mapSlice(st.strayKeys, describeKey)); diff != "" {
		t.Errorf("stray keys (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint32{13}, st.strayBackends); diff != "" {
		t.Errorf("stray backends (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]uint32{7}, st.strayNames); diff != "" {
		t.Errorf("stray names (-want +got):\n%s", diff)
	}
	wantSvcs := []Service{{Name: "default/web", Addr: feWeb, Port: 80, Protocol: TCP,
		Backends: []Backend{be("10.202.0.2", 8080), be("10.202.0.3", 8080), be("10.202.0.4", 8080)}}}
	if diff := cmp.Diff(wantSvcs, st.services(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}

	// The next Sync repairs everything, even a wanted key that was a stray.
	h := &harness{t: t, st: st, maps: f}
	svcs := []Service{
		{Name: "default/web", Addr: feWeb, Port: 80, Protocol: TCP, Backends: []Backend{be("10.202.0.2", 8080)}},
		{Name: "dup", Addr: feWeb, Port: 81, Protocol: TCP, Backends: []Backend{be("10.202.0.7", 8080)}},
	}
	h.sync(svcs)
	got := decodeState(f.contents())
	if len(got.strayKeys)+len(got.strayBackends)+len(got.strayNames) != 0 {
		t.Errorf("strays left: %v %v %v", got.strayKeys, got.strayBackends, got.strayNames)
	}
	if diff := cmp.Diff(normalize(svcs), got.services(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("after sync (-want +got):\n%s", diff)
	}
	if err := f.checkDatapath(); err != nil {
		t.Error(err)
	}
}

func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, 0, len(in))
	for _, v := range in {
		out = append(out, f(v))
	}
	return out
}
