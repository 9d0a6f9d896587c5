package ebpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The entry types must have the sizes the object's maps declare (bpf2go
// generates them from the same C, but the Go side must not drift from a
// stale object).
func TestEntrySizesMatchObject(t *testing.T) {
	spec, err := newSpec()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m          string
		key, value any
	}{
		{lbMapLb4Services, lbLb4Key{}, lbLb4Service{}},
		{lbMapLb4Backends, uint32(0), lbLb4Backend{}},
		{lbMapLb4Names, uint32(0), lbLb4Name{}},
		{lbMapLb4Affinity, lbLb4AffinityKey{}, lbLb4AffinityVal{}},
		{lbMapLb4SockFwd, lbLb4SockKey{}, lbLb4SockVal{}},
		{lbMapLb4RevUdp, lbLb4SockKey{}, lbLb4SockVal{}},
		{lbMapLb4RevTcp, lbLb4SockKey{}, lbLb4SockVal{}},
		{lbMapLb4Ct, lbLb4CtKey{}, lbLb4CtVal{}},
		{lbMapLb4Config, uint32(0), lbLb4Config{}},
	} {
		ms := spec.Maps[tc.m]
		if ms == nil {
			t.Errorf("map %s missing from the object", tc.m)
			continue
		}
		if got, want := binary.Size(tc.key), int(ms.KeySize); got != want {
			t.Errorf("%s: Go key is %d bytes, map key %d", tc.m, got, want)
		}
		if got, want := binary.Size(tc.value), int(ms.ValueSize); got != want {
			t.Errorf("%s: Go value is %d bytes, map value %d", tc.m, got, want)
		}
	}
}

// memory returns the bytes a value has in a map (native endianness).
func memory(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := binary.Write(&b, binary.NativeEndian, v); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestKeyEncoding(t *testing.T) {
	for _, tc := range []struct {
		name  string
		fe    frontend
		slot  uint16
		scope uint8
		want  []byte
	}{
		{"master", frontend{[4]byte{10, 200, 0, 1}, 80, TCP}, 0, scopeAll,
			append([]byte{10, 200, 0, 1, 0, 80}, le16(0)[0], le16(0)[1], 6, 0, 0, 0)},
		{"slot", frontend{[4]byte{10, 200, 0, 1}, 8080, UDP}, 3, scopeAll,
			append([]byte{10, 200, 0, 1, 0x1f, 0x90}, le16(3)[0], le16(3)[1], 17, 0, 0, 0)},
		{"local slot", frontend{[4]byte{192, 168, 1, 2}, 30080, TCP}, 258, scopeLocal,
			append([]byte{192, 168, 1, 2, 0x75, 0x80}, le16(258)[0], le16(258)[1], 6, 1, 0, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := tc.fe.key(tc.slot, tc.scope)
			if diff := cmp.Diff(tc.want, memory(t, k)); diff != "" {
				t.Errorf("key bytes (-want +got):\n%s", diff)
			}
			fe, slot, scope := decodeKey(k)
			if fe != tc.fe || slot != tc.slot || scope != tc.scope {
				t.Errorf("decodeKey = %v %d %d, want %v %d %d", fe, slot, scope, tc.fe, tc.slot, tc.scope)
			}
		})
	}
}

// le16 is a host-order count as the C side stores it.
func le16(v uint16) []byte {
	b := make([]byte, 2)
	binary.NativeEndian.PutUint16(b, v)
	return b
}

func TestBackendEncoding(t *testing.T) {
	b := beEntry{id: 7, addr: beAddr{[4]byte{10, 202, 3, 4}, 8443}, flags: beFlagLocal | beFlagTerminating}
	v := backendValue(b, 42)
	want := append([]byte{10, 202, 3, 4, 0x20, 0xfb, 3, 0}, memory(t, uint32(42))...)
	if diff := cmp.Diff(want, memory(t, v)); diff != "" {
		t.Errorf("backend bytes (-want +got):\n%s", diff)
	}
	if got := decodeBackend(7, v); got != b {
		t.Errorf("decodeBackend = %+v, want %+v", got, b)
	}
}

func TestMasterEncoding(t *testing.T) {
	e := &svcEntry{id: 9, flags: svcFlagExternal | svcFlagLocalOnly, affinity: 10800,
		slots: []uint32{1, 2, 3}, local: []uint32{2}}
	got := masterValue(e)
	want := lbLb4Service{SvcId: 9, AffinityTimeout: 10800, Count: 3, LocalCount: 1, Flags: 3}
	if got != want {
		t.Errorf("masterValue = %+v, want %+v", got, want)
	}
}

func TestConfigEncoding(t *testing.T) {
	if got := memory(t, configValue(netip.MustParseAddr("192.0.2.7"))); !bytes.Equal(got[:4], []byte{192, 0, 2, 7}) {
		t.Errorf("node address bytes = %v", got[:4])
	}
	if got := configValue(netip.Addr{}); got.NodeAddr != 0 {
		t.Errorf("unset node address encodes as %#x, want 0 (no SNAT)", got.NodeAddr)
	}
}

func TestNames(t *testing.T) {
	long := strings.Repeat("a", 62) + "é" // 64 bytes: é would be cut in half
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"default/web:http", "default/web:http"},
		{strings.Repeat("x", 63), strings.Repeat("x", 63)},
		{strings.Repeat("x", 70), strings.Repeat("x", 63)},
		{long, strings.Repeat("a", 62)},
	} {
		got := truncName(tc.in)
		if got != tc.want {
			t.Errorf("truncName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if back := decodeName(nameValue(got)); back != got {
			t.Errorf("name round trip of %q = %q", got, back)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Service{Name: "ok", Addr: netip.MustParseAddr("10.200.0.1"), Port: 80, Protocol: TCP,
		Backends: []Backend{{IP: netip.MustParseAddr("10.202.0.2"), Port: 8080}}}
	mod := func(f func(*Service)) Service {
		s := ok
		s.Backends = append([]Backend(nil), ok.Backends...)
		f(&s)
		return s
	}
	for _, tc := range []struct {
		name string
		svcs []Service
		want string // substring of the error; "" = valid
	}{
		{"valid", []Service{ok}, ""},
		{"mapped IPv4 is IPv4", []Service{mod(func(s *Service) { s.Addr = netip.MustParseAddr("::ffff:10.200.0.1") })}, ""},
		{"no backends is valid", []Service{mod(func(s *Service) { s.Backends = nil })}, ""},
		{"IPv6", []Service{mod(func(s *Service) { s.Addr = netip.MustParseAddr("fd00::1") })}, "service ok: address fd00::1 is not IPv4"},
		{"no address", []Service{mod(func(s *Service) { s.Addr = netip.Addr{} })}, "is not IPv4"},
		{"port 0", []Service{mod(func(s *Service) { s.Port = 0 })}, "service ok: port 0"},
		{"SCTP", []Service{mod(func(s *Service) { s.Protocol = 132 })}, "protocol proto-132"},
		{"negative affinity", []Service{mod(func(s *Service) { s.AffinityTimeout = -time.Second })}, "affinity timeout"},
		{"duplicate frontend", []Service{ok, mod(func(s *Service) { s.Name = "other" })}, "service other: same frontend 10.200.0.1:80/TCP as service ok"},
		{"same address other protocol", []Service{ok, mod(func(s *Service) { s.Protocol = UDP })}, ""},
		{"backend IPv6", []Service{mod(func(s *Service) { s.Backends[0].IP = netip.MustParseAddr("fd00::2") })}, "backend address fd00::2"},
		{"backend port 0", []Service{mod(func(s *Service) { s.Backends[0].Port = 0 })}, "backend 10.202.0.2: port 0"},
		{"backend twice", []Service{mod(func(s *Service) { s.Backends = append(s.Backends, s.Backends[0]) })}, "backend 10.202.0.2:8080 listed twice"},
		{"unnamed", []Service{mod(func(s *Service) { s.Name = ""; s.Port = 0 })}, "service #0: port 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(tc.svcs)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("validate = %v, want an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := Config{Node: "n1"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.PinRoot != DefaultPinRoot || cfg.Log == nil {
		t.Errorf("defaults: pin root %q, log %v", cfg.PinRoot, cfg.Log)
	}
	for _, bad := range []Config{
		{},
		{Node: "a/b"},
		{Node: ".."},
		{Node: "n", PinRoot: "relative"},
		{Node: "n", NodeAddr: netip.MustParseAddr("fd00::1")},
		{Node: "n", LocalCIDRs: []netip.Prefix{netip.MustParsePrefix("fd00::/64")}},
		{Node: "n", ExternalInterfaces: []string{"eth0", "eth0"}},
		{Node: "n", ExternalInterfaces: []string{"averyveryverylongname"}},
	} {
		if _, err := bad.withDefaults(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestFindCgroup2(t *testing.T) {
	for _, tc := range []struct {
		name, mounts, want string
		ok                 bool
	}{
		{"hybrid", "cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\ncgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n", "/sys/fs/cgroup/unified", true},
		{"pure v2", "sysfs /sys sysfs rw 0 0\ncgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n", "/sys/fs/cgroup", true},
		{"escaped", "none /run/my\\040cg cgroup2 rw 0 0\n", "/run/my cg", true},
		{"v1 only", "cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := findCgroup2(strings.NewReader(tc.mounts))
			if got != tc.want || ok != tc.ok {
				t.Errorf("findCgroup2 = %q, %v; want %q, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
}
