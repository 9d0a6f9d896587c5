package dns

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestResolvConf(t *testing.T) {
	tests := []struct {
		namespace, nameserver, domain string
		want                          string
	}{
		{"default", "10.88.0.1", "cluster.local",
			"nameserver 10.88.0.1\nsearch default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"},
		{"Team-A", "10.88.0.1:53", "", // port dropped, default domain
			"nameserver 10.88.0.1\nsearch team-a.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5\n"},
		{"kube-system", "fd00::1", "example.org.",
			"nameserver fd00::1\nsearch kube-system.svc.example.org svc.example.org example.org\noptions ndots:5\n"},
		{"", "10.88.0.1", "",
			"nameserver 10.88.0.1\nsearch svc.cluster.local cluster.local\noptions ndots:5\n"},
	}
	for _, tt := range tests {
		if diff := cmp.Diff(tt.want, ResolvConf(tt.namespace, tt.nameserver, tt.domain)); diff != "" {
			t.Errorf("ResolvConf(%q, %q, %q) (-want +got):\n%s", tt.namespace, tt.nameserver, tt.domain, diff)
		}
	}
}

func TestParseResolvConf(t *testing.T) {
	data := `# generated
search example.org
nameserver 127.0.0.53
nameserver   10.0.0.2  # trailing
nameserver fe80::1%eth0
nameserver not-an-address
options edns0 trust-ad
`
	want := []string{"127.0.0.53:53", "10.0.0.2:53", "[fe80::1%eth0]:53"}
	if diff := cmp.Diff(want, parseResolvConf([]byte(data))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestUpstreamsFromResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	write := func(s string, mod time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mod, mod); err != nil {
			t.Fatal(err)
		}
	}
	t0 := time.Unix(1_000_000, 0)
	write("nameserver 10.0.0.2\nnameserver 10.88.0.1\n", t0)
	u := &upstreams{path: path, self: map[string]bool{"10.88.0.1:53": true}}

	steps := []struct {
		name  string
		at    time.Duration
		write string // new content, written at t0+at before get
		want  []string
	}{
		{name: "read, without the server itself", at: 0, want: []string{"10.0.0.2:53"}},
		{name: "changed, but not looked at again yet", at: time.Second, write: "nameserver 10.0.0.3\n", want: []string{"10.0.0.2:53"}},
		{name: "looked at again", at: resolvConfRecheck + time.Second, want: []string{"10.0.0.3:53"}},
		{name: "no nameserver: fallback", at: 3 * resolvConfRecheck, write: "search example.org\n", want: []string{"127.0.0.1:53", "[::1]:53"}},
	}
	for _, s := range steps {
		if s.write != "" {
			write(s.write, t0.Add(s.at))
		}
		if diff := cmp.Diff(s.want, u.get(t0.Add(s.at))); diff != "" {
			t.Errorf("%s (-want +got):\n%s", s.name, diff)
		}
	}

	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"127.0.0.1:53", "[::1]:53"}, u.get(t0.Add(10*resolvConfRecheck))); diff != "" {
		t.Errorf("missing file (-want +got):\n%s", diff)
	}

	fixed := &upstreams{fixed: []string{"192.0.2.53:5353"}, path: path}
	if diff := cmp.Diff([]string{"192.0.2.53:5353"}, fixed.get(t0)); diff != "" {
		t.Errorf("fixed upstreams (-want +got):\n%s", diff)
	}
}
