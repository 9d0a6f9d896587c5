package ingress

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestMatch checks host and path precedence on one table.
func TestMatch(t *testing.T) {
	in := Input{
		Ingresses: aged(
			ing("exact",
				rule("foo.example.com",
					"Exact /exact a:80",
					"Prefix /exact b:80",
					"Prefix /app c:80",
					"Prefix /app/api/ d:80",
					"Prefix / e:80",
				),
				rule("only-api.example.com", "Prefix /api f:80"),
			),
			ing("wild",
				rule("*.example.com", "Prefix /app w:80", "Exact /w w:80"),
				rule("*.only.example.com", "Prefix /x w:80"),
			),
			ing("impl", rule("impl.example.com", `Impl "" i:80`, "Impl /deep/ i:80")),
			ing("anyhost", rule("", "Prefix /any h:80", "Exact /any/exact h:80")),
			ing("default", defaultBackend("def:80")),
		),
		Services: []*corev1.Service{
			service("a", "80"), service("b", "80"), service("c", "80"), service("d", "80"), service("e", "80"),
			service("f", "80"), service("w", "80"), service("i", "80"), service("h", "80"), service("def", "80"),
		},
	}
	tab, probs := Build(in)
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	const (
		exact     = "exact spec.rules[0].http.paths[0]"
		exactPfx  = "exact spec.rules[0].http.paths[1]"
		app       = "exact spec.rules[0].http.paths[2]"
		appAPI    = "exact spec.rules[0].http.paths[3]"
		root      = "exact spec.rules[0].http.paths[4]"
		onlyAPI   = "exact spec.rules[1].http.paths[0]"
		wildApp   = "wild spec.rules[0].http.paths[0]"
		wildW     = "wild spec.rules[0].http.paths[1]"
		wildOnly  = "wild spec.rules[1].http.paths[0]"
		implRoot  = "impl spec.rules[0].http.paths[0]"
		implDeep  = "impl spec.rules[0].http.paths[1]"
		anyPfx    = "anyhost spec.rules[0].http.paths[0]"
		anyExact  = "anyhost spec.rules[0].http.paths[1]"
		dflt      = "default spec.defaultBackend"
		noneMatch = ""
	)
	for _, tc := range []struct {
		host, path, want string
	}{
		// Exact before Prefix, and exact means exact.
		{"foo.example.com", "/exact", exact},
		{"foo.example.com", "/exact/", exactPfx},
		{"foo.example.com", "/exact/x", exactPfx},
		// Prefix is element-wise.
		{"foo.example.com", "/app", app},
		{"foo.example.com", "/app/", app},
		{"foo.example.com", "/app/x", app},
		{"foo.example.com", "/apples", root},
		// Longer prefix first; a trailing slash in the rule does not matter.
		{"foo.example.com", "/app/api", appAPI},
		{"foo.example.com", "/app/api/v1", appAPI},
		{"foo.example.com", "/app/apis", app},
		{"foo.example.com", "/", root},
		{"foo.example.com", "", root},
		{"foo.example.com", "/other/thing", root},
		// The Host header's port and case do not matter, nor a trailing dot.
		{"FOO.example.com:8080", "/app", app},
		{"foo.example.com.", "/app", app},
		// Paths are matched cleaned.
		{"foo.example.com", "//app//x", app},
		{"foo.example.com", "/exact/../app/api/", appAPI},
		{"foo.example.com", "/app/api/..", app},
		// A wildcard matches exactly one label; the exact host wins over it.
		{"bar.example.com", "/app/x", wildApp},
		{"bar.example.com", "/w", wildW},
		{"bar.example.com", "/w/", dflt},
		{"a.b.example.com", "/app", dflt},
		{"example.com", "/app", dflt},
		{"foo.example.com", "/w", root},
		{"x.only.example.com", "/x", wildOnly},
		// A host's rules fall through to the wildcard's, then to the rules
		// without host, then to the default backend.
		{"only-api.example.com", "/api/v1", onlyAPI},
		{"only-api.example.com", "/app", wildApp},
		{"only-api.example.com", "/any/x", anyPfx},
		{"only-api.example.com", "/nothing", dflt},
		{"unknown.test", "/any", anyPfx},
		{"unknown.test", "/any/exact", anyExact},
		{"unknown.test", "/any/exact/", anyPfx},
		{"", "/any", anyPfx},
		{"[::1]:80", "/any", anyPfx},
		{"10.0.0.1", "/nothing", dflt},
		// ImplementationSpecific is a Prefix; an empty one is "/".
		{"impl.example.com", "/", implRoot},
		{"impl.example.com", "/deep", implDeep},
		{"impl.example.com", "/deep/er", implDeep},
		{"impl.example.com", "/deeper", implRoot},
	} {
		r, ok := tab.Match(tc.host, tc.path)
		if got := routeID(r); got != tc.want || ok != (tc.want != noneMatch) {
			t.Errorf("Match(%q, %q) = %q, %v; want %q", tc.host, tc.path, got, ok, tc.want)
		}
	}

	// Without a default backend nothing matches.
	in.Ingresses = in.Ingresses[:len(in.Ingresses)-1]
	tab, _ = Build(in)
	if r, ok := tab.Match("nowhere.test", "/x"); ok || r != nil {
		t.Errorf("Match without default backend = %v, %v; want nil, false", r, ok)
	}
	if r, ok := Empty().Match("foo.example.com", "/"); ok || r != nil {
		t.Errorf("Empty().Match = %v, %v", r, ok)
	}
}

// TestRoutesContent checks everything a route carries.
func TestRoutesContent(t *testing.T) {
	in := Input{
		Ingresses: aged(
			ing("web", inNamespace("shop"), rule("shop.example.com", "Prefix /cart/ cart:http", "Impl /img img:8080")),
			ing("def", inNamespace("shop"), defaultBackend("cart:80")),
		),
		Services: []*corev1.Service{
			func() *corev1.Service { s := service("cart", "80/http"); s.Namespace = "shop"; return s }(),
			func() *corev1.Service { s := service("img", "8080"); s.Namespace = "shop"; return s }(),
		},
	}
	tab, probs := Build(in)
	if len(probs) != 0 {
		t.Fatalf("problems: %v", probs)
	}
	want := []*Route{
		{
			Ingress: Ref{"shop", "web"}, Host: "shop.example.com", Path: "/cart/", PathType: networkingv1.PathTypePrefix,
			Field:   "spec.rules[0].http.paths[0]",
			Backend: Backend{Service: Ref{"shop", "cart"}, Port: "http", ServicePort: 80},
		},
		{
			Ingress: Ref{"shop", "web"}, Host: "shop.example.com", Path: "/img", PathType: networkingv1.PathTypePrefix,
			Field:   "spec.rules[0].http.paths[1]",
			Backend: Backend{Service: Ref{"shop", "img"}, Port: "8080", ServicePort: 8080},
		},
		{
			Ingress: Ref{"shop", "def"}, Field: "spec.defaultBackend",
			Backend: Backend{Service: Ref{"shop", "cart"}, Port: "80", ServicePort: 80},
		},
	}
	if diff := cmp.Diff(want, tab.Routes()); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	if !tab.Default().IsDefault() || tab.Routes()[0].IsDefault() {
		t.Errorf("IsDefault is wrong")
	}
}

// BenchmarkMatch looks up among 1,000 hosts of 10 paths each.
func BenchmarkMatch(b *testing.B) {
	var in Input
	in.Services = []*corev1.Service{service("s", "80")}
	for i := range 1000 {
		var paths []string
		for j := range 10 {
			paths = append(paths, fmt.Sprintf("Prefix /p%d/q s:80", j))
		}
		paths = append(paths, "Exact /exact s:80")
		in.Ingresses = append(in.Ingresses, Ingress{CreateIndex: uint64(i), Ingress: ing(fmt.Sprint("i", i), rule(fmt.Sprintf("h%d.example.com", i), paths...))})
	}
	in.Ingresses = append(in.Ingresses, Ingress{CreateIndex: 5000, Ingress: ing("wild", rule("*.example.com", "Prefix / s:80"))})
	tab, probs := Build(in)
	if len(probs) != 0 {
		b.Fatal(probs)
	}
	cases := []struct{ host, path string }{
		{"h500.example.com", "/p7/q/r/s/t"},
		{"h999.example.com:443", "/exact"},
		{"other.example.com", "/a/b/c"},
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c := cases[i%len(cases)]
		if _, ok := tab.Match(c.host, c.path); !ok {
			b.Fatal("no match")
		}
	}
}
