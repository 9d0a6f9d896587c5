package ebpf

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"time"
)

// The pure core of Sync: the state is what the service, backend and name
// maps hold; diff compares it with the wanted services and returns the
// changed services, plan turns those into map writes in a safe order, and
// commit makes the state the new one once the writes are done. No syscalls
// here.

// beEntry is one backend of a service as programmed.
type beEntry struct {
	id    uint32
	addr  beAddr
	flags uint8
}

// svcEntry is one service as programmed. Entries are never changed once in
// a state (but for the seen mark): diff makes new ones.
type svcEntry struct {
	id       uint32
	name     string
	flags    uint8
	affinity uint32    // seconds
	backends []beEntry // every backend, terminating ones included
	slots    []uint32  // scope all: slot i+1 holds backend slots[i]
	local    []uint32  // scope local (LocalOnly services): local active backends
	seen     uint64    // the diff generation that last saw it
}

// state mirrors the programmed maps.
type state struct {
	svcs   map[frontend]*svcEntry
	svcIDs idAlloc
	beIDs  idAlloc
	// Entries found in the maps that belong to no service (an agent that
	// died in the middle of a Sync); the next Sync deletes them.
	strayKeys     []lbLb4Key
	strayBackends []uint32
	strayNames    []uint32
	gen           uint64
}

func newState() *state {
	return &state{svcs: map[frontend]*svcEntry{}, svcIDs: newIDAlloc(), beIDs: newIDAlloc()}
}

// idAlloc hands out non-zero uint32 IDs, moving forward so that a freed ID
// is reused as late as possible (a stale reference to it, in an affinity or
// CT entry, then most likely finds nothing).
type idAlloc struct {
	used map[uint32]struct{}
	next uint32
}

func newIDAlloc() idAlloc { return idAlloc{used: map[uint32]struct{}{}, next: 1} }

var errIDsExhausted = errors.New("IDs exhausted")

func (a *idAlloc) get() (uint32, error) {
	if len(a.used) >= math.MaxUint32-1 {
		return 0, errIDsExhausted
	}
	for {
		id := a.next
		a.next++
		if a.next == 0 {
			a.next = 1
		}
		if id == 0 {
			continue
		}
		if _, taken := a.used[id]; !taken {
			a.used[id] = struct{}{}
			return id, nil
		}
	}
}

// take marks an ID found in the maps as used.
func (a *idAlloc) take(id uint32) {
	a.used[id] = struct{}{}
	if id >= a.next && id != math.MaxUint32 {
		a.next = id + 1
	}
}

func (a *idAlloc) put(id uint32) { delete(a.used, id) }

// assignSlots returns the slot order for the wanted backend IDs, moving as
// few as possible: a wanted backend stays in its slot, new ones fill the
// holes and then go at the end, and when fewer remain the last ones move
// into the holes.
func assignSlots(old, want []uint32) []uint32 {
	wanted := make(map[uint32]bool, len(want))
	for _, id := range want {
		wanted[id] = true
	}
	present := make(map[uint32]bool, len(old))
	out := make([]uint32, len(old), max(len(old), len(want)))
	var holes []int
	for i, id := range old {
		if wanted[id] && !present[id] {
			out[i] = id
			present[id] = true
		} else {
			holes = append(holes, i)
		}
	}
	for _, id := range want {
		if present[id] {
			continue
		}
		present[id] = true
		if len(holes) > 0 {
			out[holes[0]] = id
			holes = holes[1:]
		} else {
			out = append(out, id)
		}
	}
	// Fill the remaining holes from the end.
	for len(holes) > 0 {
		last := len(out) - 1
		if holes[len(holes)-1] == last {
			holes = holes[:len(holes)-1]
		} else {
			out[holes[0]] = out[last]
			holes = holes[1:]
		}
		out = out[:last]
	}
	return out
}

// change is one service to write: old nil = new, new nil = removed.
type change struct {
	fe       frontend
	old, new *svcEntry
}

// backendFlags says how a backend is programmed.
func backendFlags(b *Backend, local []netip.Prefix) uint8 {
	var f uint8
	if b.Terminating {
		f |= beFlagTerminating
	}
	ip := b.IP.Unmap()
	for _, p := range local {
		if p.Contains(ip) {
			f |= beFlagLocal
			break
		}
	}
	return f
}

func serviceFlags(s *Service) uint8 {
	var f uint8
	if s.External {
		f |= svcFlagExternal
	}
	if s.LocalOnly {
		f |= svcFlagLocalOnly
	}
	return f
}

// same reports whether e already programs s (the fast path of a Sync that
// changes little). Backends must be in the same order.
func (e *svcEntry) same(s *Service, local []netip.Prefix) bool {
	if e.flags != serviceFlags(s) || e.affinity != uint32(affinitySeconds(s.AffinityTimeout)) ||
		e.name != truncName(s.Name) || len(e.backends) != len(s.Backends) {
		return false
	}
	for i := range s.Backends {
		b := &s.Backends[i]
		eb := &e.backends[i]
		if eb.addr.addr != b.IP.Unmap().As4() || eb.addr.port != b.Port || eb.flags != backendFlags(b, local) {
			return false
		}
	}
	return true
}

// diff returns the services whose entries must change for the maps to hold
// exactly svcs (validated). It allocates IDs for new services and backends
// from st; if the changes are not committed, st must be rebuilt from the maps.
func (st *state) diff(svcs []Service, local []netip.Prefix) ([]change, error) {
	st.gen++
	var changes []change
	for i := range svcs {
		s := &svcs[i]
		fe := frontendOf(s)
		old := st.svcs[fe]
		if old != nil {
			old.seen = st.gen
			if old.same(s, local) {
				continue
			}
		}
		e, err := st.entryFor(s, old, local)
		if err != nil {
			return nil, fmt.Errorf("service %s (%s): %w", s.Name, fe, err)
		}
		changes = append(changes, change{fe: fe, old: old, new: e})
	}
	for fe, e := range st.svcs {
		if e.seen != st.gen {
			changes = append(changes, change{fe: fe, old: e})
		}
	}
	return changes, nil
}

// entryFor builds the entry of s, keeping the IDs and slots of old.
func (st *state) entryFor(s *Service, old *svcEntry, local []netip.Prefix) (*svcEntry, error) {
	e := &svcEntry{
		name:     truncName(s.Name),
		flags:    serviceFlags(s),
		affinity: uint32(affinitySeconds(s.AffinityTimeout)),
		backends: make([]beEntry, len(s.Backends)),
		seen:     st.gen,
	}
	oldIDs := map[beAddr]uint32{}
	var oldSlots, oldLocal []uint32
	if old != nil {
		e.id = old.id
		for _, b := range old.backends {
			oldIDs[b.addr] = b.id
		}
		oldSlots, oldLocal = old.slots, old.local
	} else {
		id, err := st.svcIDs.get()
		if err != nil {
			return nil, err
		}
		e.id = id
	}
	var active, activeLocal []uint32
	for i := range s.Backends {
		b := &s.Backends[i]
		addr := beAddr{addr: b.IP.Unmap().As4(), port: b.Port}
		id, ok := oldIDs[addr]
		if !ok {
			var err error
			if id, err = st.beIDs.get(); err != nil {
				return nil, err
			}
		}
		f := backendFlags(b, local)
		e.backends[i] = beEntry{id: id, addr: addr, flags: f}
		if f&beFlagTerminating == 0 {
			active = append(active, id)
			if f&beFlagLocal != 0 {
				activeLocal = append(activeLocal, id)
			}
		}
	}
	e.slots = assignSlots(oldSlots, active)
	if s.LocalOnly {
		e.local = assignSlots(oldLocal, activeLocal)
	}
	return e, nil
}

// plan is the map writes of a Sync, in the order apply makes them: strays
// first (nothing valid refers to them, and a key written later must not be
// deleted after), then new backends and slots before the master entries that
// count them, and deletions after the master entries that stopped counting
// them, so that the data path never follows a count to a missing slot or a
// slot to a missing backend.
type plan struct {
	strayKeys     []lbLb4Key
	strayBackends []uint32
	strayNames    []uint32

	beKeys     []uint32
	beVals     []lbLb4Backend
	slotKeys   []lbLb4Key
	slotVals   []lbLb4Service
	masterKeys []lbLb4Key
	masterVals []lbLb4Service
	nameKeys   []uint32
	nameVals   []lbLb4Name

	masterDeletes []lbLb4Key
	slotDeletes   []lbLb4Key
	beDeletes     []uint32
	nameDeletes   []uint32
}

// mapID names one of the maps a plan writes.
type mapID int

const (
	mapServices mapID = iota
	mapBackends
	mapNames
)

// step is one batch of a plan: n keys (and values, unless it deletes) of
// one map.
type step struct {
	what string
	m    mapID
	del  bool
	n    int
	keys any // []lbLb4Key or []uint32
	vals any // []lbLb4Service, []lbLb4Backend or []lbLb4Name; nil when del
}

// steps returns the non-empty batches of p in the order they must be made.
func (p *plan) steps() []step {
	all := []step{
		{"delete stray slots", mapServices, true, len(p.strayKeys), p.strayKeys, nil},
		{"delete stray backends", mapBackends, true, len(p.strayBackends), p.strayBackends, nil},
		{"delete stray names", mapNames, true, len(p.strayNames), p.strayNames, nil},
		{"write backends", mapBackends, false, len(p.beKeys), p.beKeys, p.beVals},
		{"write slots", mapServices, false, len(p.slotKeys), p.slotKeys, p.slotVals},
		{"write services", mapServices, false, len(p.masterKeys), p.masterKeys, p.masterVals},
		{"write names", mapNames, false, len(p.nameKeys), p.nameKeys, p.nameVals},
		{"delete services", mapServices, true, len(p.masterDeletes), p.masterDeletes, nil},
		{"delete slots", mapServices, true, len(p.slotDeletes), p.slotDeletes, nil},
		{"delete backends", mapBackends, true, len(p.beDeletes), p.beDeletes, nil},
		{"delete names", mapNames, true, len(p.nameDeletes), p.nameDeletes, nil},
	}
	out := all[:0]
	for _, s := range all {
		if s.n > 0 {
			out = append(out, s)
		}
	}
	return out
}

func (p *plan) writes() int {
	return len(p.strayKeys) + len(p.strayBackends) + len(p.strayNames) + len(p.beKeys) + len(p.slotKeys) + len(p.masterKeys) + len(p.nameKeys) +
		len(p.masterDeletes) + len(p.slotDeletes) + len(p.beDeletes) + len(p.nameDeletes)
}

// planFor returns the writes for changes and for the strays of st.
func planFor(st *state, changes []change) *plan {
	p := &plan{strayKeys: st.strayKeys, strayBackends: st.strayBackends, strayNames: st.strayNames}
	for _, c := range changes {
		switch {
		case c.new == nil:
			p.masterDeletes = append(p.masterDeletes, c.fe.key(0, scopeAll))
			p.deleteSlots(c.fe, scopeAll, 0, len(c.old.slots))
			p.deleteSlots(c.fe, scopeLocal, 0, len(c.old.local))
			for _, b := range c.old.backends {
				p.beDeletes = append(p.beDeletes, b.id)
			}
			if c.old.name != "" {
				p.nameDeletes = append(p.nameDeletes, c.old.id)
			}
		default:
			p.writeService(c.fe, c.old, c.new)
		}
	}
	return p
}

func (p *plan) deleteSlots(fe frontend, scope uint8, from, to int) {
	for i := from; i < to; i++ {
		p.slotDeletes = append(p.slotDeletes, fe.key(uint16(i+1), scope))
	}
}

func (p *plan) writeSlots(fe frontend, scope uint8, svcID uint32, old, cur []uint32) {
	for i, id := range cur {
		if i < len(old) && old[i] == id {
			continue
		}
		p.slotKeys = append(p.slotKeys, fe.key(uint16(i+1), scope))
		p.slotVals = append(p.slotVals, slotValue(svcID, id))
	}
	p.deleteSlots(fe, scope, len(cur), len(old))
}

func (p *plan) writeService(fe frontend, old, cur *svcEntry) {
	var oldBackends map[uint32]beEntry
	var oldSlots, oldLocal []uint32
	if old != nil {
		oldBackends = make(map[uint32]beEntry, len(old.backends))
		for _, b := range old.backends {
			oldBackends[b.id] = b
		}
		oldSlots, oldLocal = old.slots, old.local
	}
	for _, b := range cur.backends {
		if ob, ok := oldBackends[b.id]; ok && ob == b {
			delete(oldBackends, b.id)
			continue
		}
		delete(oldBackends, b.id)
		p.beKeys = append(p.beKeys, b.id)
		p.beVals = append(p.beVals, backendValue(b, cur.id))
	}
	if old != nil {
		for _, b := range old.backends {
			if _, gone := oldBackends[b.id]; gone {
				p.beDeletes = append(p.beDeletes, b.id)
			}
		}
	}
	p.writeSlots(fe, scopeAll, cur.id, oldSlots, cur.slots)
	p.writeSlots(fe, scopeLocal, cur.id, oldLocal, cur.local)
	if old == nil || masterValue(old) != masterValue(cur) {
		p.masterKeys = append(p.masterKeys, fe.key(0, scopeAll))
		p.masterVals = append(p.masterVals, masterValue(cur))
	}
	switch {
	case cur.name != "" && (old == nil || old.name != cur.name):
		p.nameKeys = append(p.nameKeys, cur.id)
		p.nameVals = append(p.nameVals, nameValue(cur.name))
	case cur.name == "" && old != nil && old.name != "":
		p.nameDeletes = append(p.nameDeletes, cur.id)
	}
}

// commit makes st hold what the maps hold after plan(changes) was applied.
func (st *state) commit(changes []change) {
	for _, id := range st.strayBackends {
		st.beIDs.put(id)
	}
	for _, id := range st.strayNames {
		if !st.svcIDInUse(id, changes) {
			st.svcIDs.put(id)
		}
	}
	st.strayKeys, st.strayBackends, st.strayNames = nil, nil, nil
	for _, c := range changes {
		if c.new == nil {
			delete(st.svcs, c.fe)
			st.svcIDs.put(c.old.id)
			for _, b := range c.old.backends {
				st.beIDs.put(b.id)
			}
			continue
		}
		st.svcs[c.fe] = c.new
		if c.old == nil {
			continue
		}
		kept := make(map[uint32]bool, len(c.new.backends))
		for _, b := range c.new.backends {
			kept[b.id] = true
		}
		for _, b := range c.old.backends {
			if !kept[b.id] {
				st.beIDs.put(b.id)
			}
		}
	}
}

// svcIDInUse reports whether a service ID belongs to a service after changes.
func (st *state) svcIDInUse(id uint32, changes []change) bool {
	for _, e := range st.svcs {
		if e.id == id {
			return true
		}
	}
	for _, c := range changes {
		if c.new != nil && c.new.id == id {
			return true
		}
	}
	return false
}

// mapContents is what the service, backend and name maps hold.
type mapContents struct {
	svcKeys  []lbLb4Key
	svcVals  []lbLb4Service
	beKeys   []uint32
	beVals   []lbLb4Backend
	nameKeys []uint32
	nameVals []lbLb4Name
}

// decodeState rebuilds the state from the maps' contents. Entries that
// belong to no service become strays.
func decodeState(mc *mapContents) *state {
	st := newState()
	byID := map[uint32]*svcEntry{}
	var slotIdx []int // indexes of the slot entries in mc.svcKeys
	masters := map[frontend]lbLb4Service{}
	for i, k := range mc.svcKeys {
		fe, slot, scope := decodeKey(k)
		if slot == 0 && scope == scopeAll {
			masters[fe] = mc.svcVals[i]
			continue
		}
		slotIdx = append(slotIdx, i)
	}
	// Masters in a fixed order, so that a duplicate ID always loses the same way.
	fes := make([]frontend, 0, len(masters))
	for fe := range masters {
		fes = append(fes, fe)
	}
	slices.SortFunc(fes, cmpFrontend)
	for _, fe := range fes {
		v := masters[fe]
		if _, dup := byID[v.SvcId]; dup || v.SvcId == 0 {
			st.strayKeys = append(st.strayKeys, fe.key(0, scopeAll))
			continue
		}
		e := &svcEntry{id: v.SvcId, flags: v.Flags, affinity: v.AffinityTimeout,
			slots: make([]uint32, v.Count), local: make([]uint32, v.LocalCount)}
		byID[v.SvcId] = e
		st.svcs[fe] = e
		st.svcIDs.take(v.SvcId)
	}
	for _, i := range slotIdx {
		k := mc.svcKeys[i]
		fe, slot, scope := decodeKey(k)
		e := st.svcs[fe]
		var list []uint32
		if e != nil {
			switch scope {
			case scopeAll:
				list = e.slots
			case scopeLocal:
				list = e.local
			}
		}
		if slot == 0 || int(slot) > len(list) || mc.svcVals[i].SvcId != e.id {
			st.strayKeys = append(st.strayKeys, k)
			continue
		}
		list[slot-1] = mc.svcVals[i].BackendId
	}
	for i, id := range mc.beKeys {
		v := mc.beVals[i]
		e := byID[v.SvcId]
		st.beIDs.take(id)
		if e == nil {
			st.strayBackends = append(st.strayBackends, id)
			continue
		}
		e.backends = append(e.backends, decodeBackend(id, v))
	}
	for i, id := range mc.nameKeys {
		e := byID[id]
		if e == nil {
			st.svcIDs.take(id)
			st.strayNames = append(st.strayNames, id)
			continue
		}
		e.name = decodeName(mc.nameVals[i])
	}
	for _, e := range st.svcs {
		slices.SortFunc(e.backends, func(a, b beEntry) int { return cmpBeAddr(a.addr, b.addr) })
	}
	slices.SortFunc(st.strayKeys, cmpKey)
	slices.Sort(st.strayBackends)
	slices.Sort(st.strayNames)
	return st
}

func cmpFrontend(a, b frontend) int {
	if c := cmpBytes(a.addr, b.addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.port, b.port); c != 0 {
		return c
	}
	return cmp.Compare(a.proto, b.proto)
}

func cmpBeAddr(a, b beAddr) int {
	if c := cmpBytes(a.addr, b.addr); c != 0 {
		return c
	}
	return cmp.Compare(a.port, b.port)
}

func cmpBytes(a, b [4]byte) int {
	for i := range a {
		if c := cmp.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return 0
}

func cmpKey(a, b lbLb4Key) int {
	fa, sa, ca := decodeKey(a)
	fb, sb, cb := decodeKey(b)
	if c := cmpFrontend(fa, fb); c != 0 {
		return c
	}
	if c := cmp.Compare(ca, cb); c != 0 {
		return c
	}
	return cmp.Compare(sa, sb)
}

// services returns the services of st, sorted by frontend, their backends
// sorted by address.
func (st *state) services() []Service {
	fes := make([]frontend, 0, len(st.svcs))
	for fe := range st.svcs {
		fes = append(fes, fe)
	}
	slices.SortFunc(fes, cmpFrontend)
	out := make([]Service, 0, len(fes))
	for _, fe := range fes {
		e := st.svcs[fe]
		s := Service{
			Name:            e.name,
			Addr:            netip.AddrFrom4(fe.addr),
			Port:            fe.port,
			Protocol:        fe.proto,
			External:        e.flags&svcFlagExternal != 0,
			LocalOnly:       e.flags&svcFlagLocalOnly != 0,
			AffinityTimeout: time.Duration(e.affinity) * time.Second,
		}
		bes := slices.Clone(e.backends)
		slices.SortFunc(bes, func(a, b beEntry) int { return cmpBeAddr(a.addr, b.addr) })
		for _, b := range bes {
			s.Backends = append(s.Backends, Backend{
				IP:          netip.AddrFrom4(b.addr.addr),
				Port:        b.addr.port,
				Terminating: b.flags&beFlagTerminating != 0,
			})
		}
		out = append(out, s)
	}
	return out
}
