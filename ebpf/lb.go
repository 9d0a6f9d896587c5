package ebpf

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// LB is one node's load balancer: its loaded maps and programs, and the
// links that attach them. Its methods may be called from several goroutines.
// The kernel objects outlive it: Close releases the handles and leaves
// everything attached through the pins; Remove detaches and unpins.
type LB struct {
	cfg    Config
	log    *slog.Logger
	dir    string // PinRoot/Node
	cgroup string

	mu     sync.Mutex
	objs   lbObjects
	links  []link.Link
	st     *state // what the maps hold
	stale  bool   // a write failed: st may differ from the maps
	closed bool
}

// Open loads the node's programs and maps, reusing the pinned maps (and
// their contents) of an earlier Open, and attaches the programs where they
// are not attached yet: the cgroup hooks to the cgroup v2 root (or
// CgroupPath), the TCX hooks to each external interface. Attached programs
// of an older object are replaced atomically. It mounts bpffs at
// /sys/fs/bpf when needed. Only one LB per node may be open at a time.
func Open(cfg Config) (_ *LB, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	// A no-op on kernels that account BPF memory to cgroups (5.11).
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("node %s: raise the memlock limit: %w", cfg.Node, err)
	}
	if err := ensureBPFFS(cfg.PinRoot); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	cg, err := cgroupPath(cfg.CgroupPath)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	if err := isCgroup2(cg); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	lb := &LB{
		cfg:    cfg,
		log:    cfg.Log.With("node", cfg.Node),
		dir:    filepath.Join(cfg.PinRoot, cfg.Node),
		cgroup: cg,
	}
	if err := os.MkdirAll(lb.dir, 0o700); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	spec, err := newSpec()
	if err != nil {
		return nil, err
	}
	if err := lb.load(spec); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	defer func() {
		if err != nil {
			lb.Close()
		}
	}()
	zero := uint32(0)
	cv := configValue(cfg.NodeAddr)
	if err := lb.objs.Lb4Config.Update(&zero, &cv, ebpf.UpdateAny); err != nil {
		return nil, fmt.Errorf("node %s: write config: %w", cfg.Node, err)
	}
	if err := lb.attach(); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	if lb.st, err = lb.readState(); err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.Node, err)
	}
	lb.log.Info("load balancer open", "pins", lb.dir, "cgroup", cg,
		"interfaces", cfg.ExternalInterfaces, "services", len(lb.st.svcs))
	return lb, nil
}

// load loads the spec into the kernel with the maps pinned by name in the
// node's directory, reusing pinned ones. A pinned map that no longer fits
// the spec (a new layout) is replaced: its contents are lost, which the next
// Sync repairs for services; connection state starts afresh.
func (lb *LB) load(spec *ebpf.CollectionSpec) error {
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: lb.dir}}
	err := spec.LoadAndAssign(&lb.objs, opts)
	if !errors.Is(err, ebpf.ErrMapIncompatible) {
		if err != nil {
			return fmt.Errorf("load programs and maps: %w", err)
		}
		return nil
	}
	for name, ms := range spec.Maps {
		if ms.Pinning != ebpf.PinByName {
			continue
		}
		path := filepath.Join(lb.dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			continue
		}
		if err := ms.Compatible(m); err != nil {
			lb.log.Warn("replacing pinned map of an older layout", "map", name, "reason", err)
			if err := os.Remove(path); err != nil {
				m.Close()
				return fmt.Errorf("replace map %s: %w", name, err)
			}
		}
		m.Close()
	}
	if err := spec.LoadAndAssign(&lb.objs, opts); err != nil {
		return fmt.Errorf("load programs and maps: %w", err)
	}
	return nil
}

// Sync makes the service, backend and name maps hold exactly svcs: it
// validates them all first (a bad list changes nothing), then writes only
// the entries that differ, in an order that keeps every intermediate state
// consistent for the data path. Connections already made are not moved.
func (lb *LB) Sync(svcs []Service) error {
	if err := validate(svcs); err != nil {
		return err
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return fmt.Errorf("node %s: sync: load balancer closed", lb.cfg.Node)
	}
	start := time.Now()
	if lb.stale {
		st, err := lb.readState()
		if err != nil {
			return fmt.Errorf("node %s: sync: %w", lb.cfg.Node, err)
		}
		lb.st, lb.stale = st, false
	}
	changes, err := lb.st.diff(svcs, lb.cfg.LocalCIDRs)
	if err != nil {
		lb.stale = true
		return fmt.Errorf("node %s: sync: %w", lb.cfg.Node, err)
	}
	p := planFor(lb.st, changes)
	if err := lb.apply(p); err != nil {
		lb.stale = true
		return fmt.Errorf("node %s: sync: %w", lb.cfg.Node, err)
	}
	lb.st.commit(changes)
	if len(changes) > 0 {
		lb.log.Debug("synced services", "services", len(svcs), "changed", len(changes),
			"writes", p.writes(), "took", time.Since(start))
	}
	return nil
}

// apply writes a plan, batched per map and phase.
func (lb *LB) apply(p *plan) error {
	for _, s := range p.steps() {
		m := map[mapID]*ebpf.Map{
			mapServices: lb.objs.Lb4Services,
			mapBackends: lb.objs.Lb4Backends,
			mapNames:    lb.objs.Lb4Names,
		}[s.m]
		var err error
		if s.del {
			err = deleteAll(m, s.keys, s.n)
		} else {
			err = updateAll(m, s.keys, s.vals, s.n)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", s.what, err)
		}
	}
	return nil
}

// updateAll writes the n keys and values (slices) in one batch.
func updateAll(m *ebpf.Map, keys, vals any, n int) error {
	_, err := m.BatchUpdate(keys, vals, nil)
	if !errors.Is(err, ebpf.ErrNotSupported) {
		return err
	}
	// Kernels before 5.6: one at a time.
	kv, vv := reflect.ValueOf(keys), reflect.ValueOf(vals)
	for i := range n {
		if err := m.Update(kv.Index(i).Addr().Interface(), vv.Index(i).Addr().Interface(), ebpf.UpdateAny); err != nil {
			return err
		}
	}
	return nil
}

// deleteAll deletes the n keys (a slice); keys already gone are fine.
func deleteAll(m *ebpf.Map, keys any, n int) error {
	kv := reflect.ValueOf(keys)
	for from := 0; from < n; {
		done, err := m.BatchDelete(kv.Slice(from, n).Interface(), nil)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, ebpf.ErrKeyNotExist):
			// The batch stops at the missing key.
			from += done + 1
		case errors.Is(err, ebpf.ErrNotSupported):
			for i := from; i < n; i++ {
				if err := m.Delete(kv.Index(i).Addr().Interface()); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					return err
				}
			}
			return nil
		default:
			return err
		}
	}
	return nil
}

// Services returns what the maps hold, read back from the kernel: services
// sorted by address, port and protocol, their backends by address and port.
// Names are cut to 63 bytes and affinity timeouts to whole seconds, as Sync
// stores them.
func (lb *LB) Services() ([]Service, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return nil, fmt.Errorf("node %s: services: load balancer closed", lb.cfg.Node)
	}
	st, err := lb.readState()
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", lb.cfg.Node, err)
	}
	return st.services(), nil
}

// readState reads the service, backend and name maps.
func (lb *LB) readState() (*state, error) {
	var mc mapContents
	var err error
	if mc.svcKeys, mc.svcVals, err = dump[lbLb4Key, lbLb4Service](lb.objs.Lb4Services); err != nil {
		return nil, fmt.Errorf("read services: %w", err)
	}
	if mc.beKeys, mc.beVals, err = dump[uint32, lbLb4Backend](lb.objs.Lb4Backends); err != nil {
		return nil, fmt.Errorf("read backends: %w", err)
	}
	if mc.nameKeys, mc.nameVals, err = dump[uint32, lbLb4Name](lb.objs.Lb4Names); err != nil {
		return nil, fmt.Errorf("read names: %w", err)
	}
	return decodeState(&mc), nil
}

// dump reads a whole hash map, in batches where the kernel can.
func dump[K, V any](m *ebpf.Map) ([]K, []V, error) {
	const chunk = 4096
	var keys []K
	var vals []V
	var cursor ebpf.MapBatchCursor
	kb := make([]K, chunk)
	vb := make([]V, chunk)
	for {
		n, err := m.BatchLookup(&cursor, kb, vb, nil)
		keys = append(keys, kb[:n]...)
		vals = append(vals, vb[:n]...)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return keys, vals, nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			break
		}
		if err != nil {
			return nil, nil, err
		}
	}
	keys, vals = keys[:0], vals[:0]
	var k K
	var v V
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
		vals = append(vals, v)
	}
	return keys, vals, it.Err()
}

// Close releases the handles. Programs stay attached through their pinned
// links, and the maps keep their contents, so traffic flows on until the
// next Open (or Remove).
func (lb *LB) Close() error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.closeLocked()
}

func (lb *LB) closeLocked() error {
	if lb.closed {
		return nil
	}
	lb.closed = true
	var errs []error
	for _, l := range lb.links {
		if err := l.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	lb.links = nil
	closeObjs(&lb.objs)
	return errors.Join(errs...)
}

// closeObjs closes what was loaded, skipping what was not.
func closeObjs(o *lbObjects) {
	for _, p := range []*ebpf.Program{o.Lb4Connect4, o.Lb4Sendmsg4, o.Lb4Recvmsg4, o.Lb4Getpeername4, o.Lb4Ingress, o.Lb4Egress} {
		if p != nil {
			p.Close()
		}
	}
	for _, m := range []*ebpf.Map{o.Lb4Services, o.Lb4Backends, o.Lb4Names, o.Lb4Affinity, o.Lb4SockFwd,
		o.Lb4RevUdp, o.Lb4RevTcp, o.Lb4Ct, o.Lb4Config} {
		if m != nil {
			m.Close()
		}
	}
}

// Remove detaches the node's programs and deletes everything it pinned
// (keelson down, tests). The LB is closed afterwards.
func (lb *LB) Remove() error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	var errs []error
	if !lb.closed {
		for _, l := range lb.links {
			if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
				errs = append(errs, err)
			}
		}
	}
	errs = append(errs, lb.closeLocked())
	errs = append(errs, Unpin(lb.cfg))
	return errors.Join(errs...)
}

// Unpin detaches and deletes everything pinned for cfg.Node without loading
// anything: for `keelson down` after an agent died, and for test cleanup.
// Links pinned there are detached even if some process still holds them.
func Unpin(cfg Config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	dir := filepath.Join(cfg.PinRoot, cfg.Node)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("node %s: unpin: %w", cfg.Node, err)
	}
	var errs []error
	for _, e := range entries {
		if !isLinkPin(e.Name()) {
			continue
		}
		l, err := link.LoadPinnedLink(filepath.Join(dir, e.Name()), nil)
		if err != nil {
			continue
		}
		if err := l.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
			errs = append(errs, fmt.Errorf("node %s: detach %s: %w", cfg.Node, e.Name(), err))
		}
		l.Close()
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("node %s: unpin: %w", cfg.Node, err))
	}
	// The root goes when its last node does; another node's pins keep it.
	_ = os.Remove(cfg.PinRoot)
	return errors.Join(errs...)
}
