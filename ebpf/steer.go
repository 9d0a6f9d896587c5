package ebpf

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// Socket steering (bpf/steer.c): an sk_lookup program on the node's network
// namespace hands new TCP connections to steered addresses and ports to the
// Ingress proxy's listening sockets. Pins, beside the load balancer's in
// PinRoot/<node>:
//
//	steer4_addrs             the steered destination addresses
//	steer4_socks             port -> listening socket
//	link_netns_sk_lookup     the program attached to the namespace

// steerLinkPin is the pin of the link that attaches the program.
const steerLinkPin = linkPinPrefix + "netns_sk_lookup"

// defaultNetNS is the network namespace of the calling thread: the
// process's, unless the caller locked its goroutine to a thread in
// another namespace.
const defaultNetNS = "/proc/thread-self/ns/net"

// SteerConfig says which connections the steering program sends to the
// proxy and where it lives.
type SteerConfig struct {
	Node    string // required; pins under PinRoot/Node (beside the load balancer's)
	PinRoot string // default DefaultPinRoot
	// NetNS is a network namespace file (/proc/PID/ns/net, /run/netns/NAME)
	// to attach to; default the caller's. The proxy's listening sockets
	// must live in that namespace.
	NetNS string
	Log   *slog.Logger // nil discards
}

// withDefaults returns cfg with its defaults filled in, or an error naming
// what is wrong (the node and pin root are checked as Config's are).
func (cfg SteerConfig) withDefaults() (SteerConfig, error) {
	c, err := Config{Node: cfg.Node, PinRoot: cfg.PinRoot, Log: cfg.Log}.withDefaults()
	if err != nil {
		return cfg, err
	}
	cfg.PinRoot, cfg.Log = c.PinRoot, c.Log
	if cfg.NetNS == "" {
		cfg.NetNS = defaultNetNS
	}
	return cfg, nil
}

// Steering is one node's socket steering: the loaded maps and program, and
// the link that attaches the program to the node's network namespace. Its
// methods may be called from several goroutines. The kernel objects outlive
// it: Close releases the handles and leaves the program attached, steering
// to the sockets already set for as long as they are open; Remove detaches
// and unpins. Only one Steering per node may be open at a time.
type Steering struct {
	cfg SteerConfig
	log *slog.Logger
	dir string // PinRoot/Node

	mu     sync.Mutex
	objs   steerObjects
	link   link.Link
	closed bool
}

// OpenSteering loads the node's steering program and maps, reusing the
// pinned maps (and the sockets and addresses in them) of an earlier open,
// and attaches the program to cfg.NetNS unless it is attached there already.
// An attached program of an older object is replaced atomically (link
// update). It mounts bpffs at /sys/fs/bpf when needed.
func OpenSteering(cfg SteerConfig) (*Steering, error) {
	spec, err := loadSteer()
	if err != nil {
		return nil, fmt.Errorf("parse the BPF object: %w", err)
	}
	return openSteeringSpec(cfg, spec)
}

// openSteeringSpec is OpenSteering with the object given (tests load
// changed programs).
func openSteeringSpec(cfg SteerConfig, spec *ebpf.CollectionSpec) (_ *Steering, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Steering, error) {
		return nil, fmt.Errorf("node %s: steering: %w", cfg.Node, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return fail(fmt.Errorf("raise the memlock limit: %w", err))
	}
	if err := ensureBPFFS(cfg.PinRoot); err != nil {
		return fail(err)
	}
	nsf, nsIno, err := openNetNS(cfg.NetNS)
	if err != nil {
		return fail(err)
	}
	defer nsf.Close()

	s := &Steering{
		cfg: cfg,
		log: cfg.Log.With("node", cfg.Node, "component", "steering"),
		dir: filepath.Join(cfg.PinRoot, cfg.Node),
	}
	if err := mkdirNode(cfg.PinRoot, s.dir); err != nil {
		return fail(err)
	}
	if err := loadPinned(spec, s.dir, s.log, &s.objs); err != nil {
		return fail(err)
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := s.attach(nsf, nsIno); err != nil {
		return fail(err)
	}
	addrs, err := s.readAddrs()
	if err != nil {
		return fail(err)
	}
	ports, _, err := dump[uint32, uint64](s.objs.Steer4Socks)
	if err != nil {
		return fail(fmt.Errorf("read listeners: %w", err))
	}
	slices.Sort(ports)
	s.log.Info("steering open", "pins", s.dir, "netns", cfg.NetNS, "addresses", len(addrs), "ports with a listener", ports)
	return s, nil
}

// openNetNS opens a network namespace file and returns it with its inode
// number, which identifies the namespace.
func openNetNS(path string) (*os.File, uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("network namespace: %w", err)
	}
	typ, err := unix.IoctlRetInt(int(f.Fd()), unix.NS_GET_NSTYPE)
	if err != nil || typ != unix.CLONE_NEWNET {
		f.Close()
		return nil, 0, fmt.Errorf("network namespace: %s is not one: %w", path, ErrInvalid)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("network namespace %s: %w", path, err)
	}
	return f, st.Ino, nil
}

// mkdirNode makes a node's pin directory. Unpin of another node removes
// root when it is empty; it tries again if that happened between making
// root and dir.
func mkdirNode(root, dir string) error {
	for try := 0; ; try++ {
		err := os.MkdirAll(dir, 0o700)
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrNotExist) || try == 2 {
			return err
		}
	}
}

// loadPinned loads spec into obj (a bpf2go objects struct) with its maps
// pinned by name in dir, reusing pinned ones. A pinned map that no longer
// fits the spec (a new layout) is replaced and its contents are lost.
func loadPinned(spec *ebpf.CollectionSpec, dir string, log *slog.Logger, obj any) error {
	opts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: dir}}
	err := spec.LoadAndAssign(obj, opts)
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
		path := filepath.Join(dir, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if err != nil {
			continue
		}
		if err := ms.Compatible(m); err != nil {
			log.Warn("replacing pinned map of an older layout", "map", name, "reason", err)
			if err := os.Remove(path); err != nil {
				m.Close()
				return fmt.Errorf("replace map %s: %w", name, err)
			}
		}
		m.Close()
	}
	if err := spec.LoadAndAssign(obj, opts); err != nil {
		return fmt.Errorf("load programs and maps: %w", err)
	}
	return nil
}

// attach makes the pinned link attach this object's program (or the same
// code already attached) to the namespace ns (inode nsIno).
func (s *Steering) attach(ns *os.File, nsIno uint64) error {
	prog := s.objs.Steer4Lookup
	path := filepath.Join(s.dir, steerLinkPin)
	l, err := link.LoadPinnedLink(path, nil)
	switch {
	case err == nil:
		info, err := l.Info()
		if err == nil && info.NetNs() != nil && uint64(info.NetNs().NetnsInode) == nsIno &&
			ebpf.AttachType(info.NetNs().AttachType) == ebpf.AttachSkLookup {
			if info.Program != progID(prog) && !s.runs(info.Program, prog) {
				if err := l.Update(prog); err != nil {
					l.Close()
					return fmt.Errorf("update %s: %w", steerLinkPin, err)
				}
				s.log.Info("updated attached program", "link", steerLinkPin)
			}
			s.link = l
			return nil
		}
		// Another namespace, or the namespace is gone: attach anew.
		l.Close()
		if err := detachPinned(path); err != nil {
			return err
		}
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("load %s: %w", steerLinkPin, err)
	}
	l, err = link.AttachNetNs(int(ns.Fd()), prog)
	if err != nil {
		return fmt.Errorf("attach to network namespace %s: %w", s.cfg.NetNS, err)
	}
	if err := l.Pin(path); err != nil {
		l.Close()
		return fmt.Errorf("pin %s: %w", steerLinkPin, err)
	}
	s.log.Info("attached", "link", steerLinkPin, "netns", s.cfg.NetNS)
	s.link = l
	return nil
}

// runs reports whether the program with the given ID is the same code as
// prog, using the same maps.
func (s *Steering) runs(id ebpf.ProgramID, prog *ebpf.Program) bool {
	old, err := ebpf.NewProgramFromID(id)
	if err != nil {
		return false
	}
	defer old.Close()
	same, err := sameProgram(old, prog)
	return err == nil && same
}

// SetListener steers new connections to port (on the steered addresses) to
// ln, replacing the listener set for port before. ln must be a listening
// TCP socket that takes IPv4 connections (AF_INET, or AF_INET6 without
// IPV6_V6ONLY) in the namespace the program is attached to; the address it
// is bound to does not matter. The kernel forgets it when it closes: its
// port is then no longer steered.
func (s *Steering) SetListener(port uint16, ln *net.TCPListener) error {
	if port == 0 || ln == nil {
		return fmt.Errorf("node %s: steer port %d: port 0 or no listener: %w", s.cfg.Node, port, ErrInvalid)
	}
	rc, err := ln.SyscallConn()
	if err != nil {
		return fmt.Errorf("node %s: steer port %d: %w", s.cfg.Node, port, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("node %s: steer port %d: steering closed", s.cfg.Node, port)
	}
	var serr error
	// Control holds the descriptor open while the map takes the socket.
	err = rc.Control(func(fd uintptr) {
		if serr = checkListener(int(fd)); serr != nil {
			return
		}
		serr = s.objs.Steer4Socks.Update(steerPortKey(port), uint64(fd), ebpf.UpdateAny)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("node %s: steer port %d to %s: %w", s.cfg.Node, port, ln.Addr(), err)
	}
	s.log.Info("steering port", "port", port, "listener", ln.Addr())
	return nil
}

// ListenSteerable is net.Listen for the proxy's listeners: network is
// "tcp4" or "tcp" (dual-stack), address a host:port ("127.0.0.1:0" will
// do, as steered connections reach the socket whatever it is bound to). It
// makes a plain TCP socket, which SetListener takes: Go listens with
// Multipath TCP by default (since 1.24, where the kernel has it), and the
// kernel cannot steer connections to such a socket.
func ListenSteerable(ctx context.Context, network, address string) (*net.TCPListener, error) {
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return ln.(*net.TCPListener), nil
}

// checkListener says whether the socket fd can take steered connections.
func checkListener(fd int) error {
	if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || v == 0 {
		return fmt.Errorf("not a listening socket: %w", ErrInvalid)
	}
	switch v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL); {
	case err != nil:
		return err
	case v == unix.IPPROTO_MPTCP:
		return fmt.Errorf("a Multipath TCP socket (Go's default for listeners) cannot be steered to; listen with ListenSteerable: %w", ErrInvalid)
	case v != unix.IPPROTO_TCP:
		return fmt.Errorf("not a TCP socket (protocol %d): %w", v, ErrInvalid)
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return err
	}
	switch domain {
	case unix.AF_INET:
		return nil
	case unix.AF_INET6:
		if v, err := unix.GetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY); err != nil || v != 0 {
			return fmt.Errorf("an IPv6-only socket takes no IPv4 connections: %w", ErrInvalid)
		}
		return nil
	}
	return fmt.Errorf("socket family %d: %w", domain, ErrInvalid)
}

// SetAddrs makes exactly addrs (IPv4; the node's addresses and its
// LoadBalancer addresses) the steered destination addresses. The change
// applies to the next connection. An invalid list changes nothing.
func (s *Steering) SetAddrs(addrs []netip.Addr) error {
	want, err := steerAddrKeys(addrs)
	if err != nil {
		return fmt.Errorf("node %s: steer addresses: %w", s.cfg.Node, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return fmt.Errorf("node %s: steer addresses: steering closed", s.cfg.Node)
	}
	have, err := s.readAddrs()
	if err != nil {
		return fmt.Errorf("node %s: steer addresses: %w", s.cfg.Node, err)
	}
	add, del := diffAddrs(have, want)
	one := uint8(1)
	for _, k := range add {
		if err := s.objs.Steer4Addrs.Update(k, one, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("node %s: steer address %s: %w", s.cfg.Node, steerAddr(k), err)
		}
	}
	for _, k := range del {
		if err := s.objs.Steer4Addrs.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("node %s: stop steering address %s: %w", s.cfg.Node, steerAddr(k), err)
		}
	}
	if len(add)+len(del) > 0 {
		s.log.Info("steered addresses", "added", steerAddrs(add), "removed", steerAddrs(del), "now", len(want))
	}
	return nil
}

// readAddrs returns the keys of steer4_addrs.
func (s *Steering) readAddrs() ([]uint32, error) {
	keys, _, err := dump[uint32, uint8](s.objs.Steer4Addrs)
	if err != nil {
		return nil, fmt.Errorf("read addresses: %w", err)
	}
	return keys, nil
}

// Close releases the handles. The program stays attached through its
// pinned link and keeps steering to the sockets set, while they are open,
// until the next OpenSteering (or Remove).
func (s *Steering) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closeLocked()
}

func (s *Steering) closeLocked() error {
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.link != nil {
		errs = append(errs, s.link.Close())
		s.link = nil
	}
	errs = append(errs, s.objs.Close())
	return errors.Join(errs...)
}

// Remove detaches the program and deletes the steering pins of the node;
// the load balancer's stay. The Steering is closed afterwards.
func (s *Steering) Remove() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	if !s.closed && s.link != nil {
		if err := s.link.Detach(); err != nil && !errors.Is(err, ebpf.ErrNotSupported) {
			errs = append(errs, fmt.Errorf("node %s: detach steering: %w", s.cfg.Node, err))
		}
	}
	errs = append(errs, s.closeLocked(), UnpinSteering(s.cfg))
	return errors.Join(errs...)
}

// UnpinSteering detaches and deletes the steering pins of cfg.Node without
// loading anything (keelson down after an agent died, tests); the load
// balancer's pins stay. The link is detached even if some process still
// holds it. (Unpin, the load balancer's, removes the steering pins too.)
func UnpinSteering(cfg SteerConfig) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	dir := filepath.Join(cfg.PinRoot, cfg.Node)
	var errs []error
	if err := detachPinned(filepath.Join(dir, steerLinkPin)); err != nil {
		errs = append(errs, fmt.Errorf("node %s: unpin %s: %w", cfg.Node, steerLinkPin, err))
	}
	for _, name := range []string{steerMapSteer4Addrs, steerMapSteer4Socks} {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("node %s: unpin %s: %w", cfg.Node, name, err))
		}
	}
	// The directory goes when nothing else of the node is pinned there,
	// the root when no other node is.
	_ = os.Remove(dir)
	_ = os.Remove(cfg.PinRoot)
	return errors.Join(errs...)
}

// Encoding of the steering maps (pure). steer4_addrs keys hold an IPv4
// address in network byte order; steer4_socks keys hold a port in host
// byte order, as struct bpf_sk_lookup has them.

func steerAddrKey(a netip.Addr) uint32 { return netAddr(a.Unmap().As4()) }

func steerAddr(k uint32) netip.Addr { return netip.AddrFrom4(hostAddr(k)) }

func steerPortKey(port uint16) uint32 { return uint32(port) }

// steerAddrKeys validates addrs (each IPv4, or IPv4-mapped IPv6) and returns
// their keys, sorted and without duplicates.
func steerAddrKeys(addrs []netip.Addr) ([]uint32, error) {
	keys := make([]uint32, 0, len(addrs))
	var errs []error
	for _, a := range addrs {
		if !a.Unmap().Is4() {
			errs = append(errs, fmt.Errorf("address %v is not IPv4: %w", a, ErrInvalid))
			continue
		}
		keys = append(keys, steerAddrKey(a))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// diffAddrs returns the keys of want missing from have, and those of have
// not in want; want is sorted.
func diffAddrs(have, want []uint32) (add, del []uint32) {
	in := make(map[uint32]bool, len(have))
	for _, k := range have {
		in[k] = true
		if _, found := slices.BinarySearch(want, k); !found {
			del = append(del, k)
		}
	}
	for _, k := range want {
		if !in[k] {
			add = append(add, k)
		}
	}
	return add, del
}

func steerAddrs(keys []uint32) []netip.Addr {
	out := make([]netip.Addr, len(keys))
	for i, k := range keys {
		out[i] = steerAddr(k)
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}
