package ingress

import (
	"crypto/tls"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
)

// TestSelection checks which Ingresses Keelson serves.
func TestSelection(t *testing.T) {
	ours := class("keelson", ControllerName, false)
	oursDefault := class("keelson", ControllerName, true)
	theirs := class("nginx", "k8s.io/ingress-nginx", false)
	theirsDefault := class("nginx", "k8s.io/ingress-nginx", true)
	r := rule("a.example.com", "Prefix / s:80")
	for _, tc := range []struct {
		name    string
		classes []*networkingv1.IngressClass
		ing     *networkingv1.Ingress
		served  bool
		problem string // the Reason of the only problem expected
	}{
		{"class of ours", []*networkingv1.IngressClass{ours, theirs}, ing("i", className("keelson"), r), true, ""},
		{"class of others", []*networkingv1.IngressClass{ours, theirs}, ing("i", className("nginx"), r), false, ""},
		{"class that does not exist", []*networkingv1.IngressClass{ours}, ing("i", className("traefik"), r), false, "IngressClassNotFound"},
		{"no class, ours is default", []*networkingv1.IngressClass{oursDefault, theirs}, ing("i", r), true, ""},
		{"no class, no default", []*networkingv1.IngressClass{ours, theirs}, ing("i", r), false, ""},
		{"no class, theirs is default", []*networkingv1.IngressClass{ours, theirsDefault}, ing("i", r), false, ""},
		{"no class, no classes at all", nil, ing("i", r), true, ""},
		{"class named, no classes at all", nil, ing("i", className("keelson"), r), false, "IngressClassNotFound"},
		{"legacy annotation keelson", []*networkingv1.IngressClass{theirsDefault}, ing("i", annotate(AnnotationLegacyClass, "keelson"), r), true, ""},
		{"legacy annotation naming our class", []*networkingv1.IngressClass{class("edge", ControllerName, false)}, ing("i", annotate(AnnotationLegacyClass, "edge"), r), true, ""},
		{"legacy annotation nginx", []*networkingv1.IngressClass{oursDefault}, ing("i", annotate(AnnotationLegacyClass, "nginx"), r), false, ""},
		{"legacy annotation nginx, no classes", nil, ing("i", annotate(AnnotationLegacyClass, "nginx"), r), false, ""},
		{"class field wins over annotation", []*networkingv1.IngressClass{ours, theirs}, ing("i", className("nginx"), annotate(AnnotationLegacyClass, "keelson"), r), false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab, probs := Build(Input{Ingresses: aged(tc.ing), Classes: tc.classes, Services: []*corev1.Service{service("s", "80")}})
			if got := len(tab.Routes()) == 1; got != tc.served {
				t.Errorf("served = %v, want %v", got, tc.served)
			}
			var reasons []string
			for _, p := range probs {
				reasons = append(reasons, p.Reason)
			}
			var want []string
			if tc.problem != "" {
				want = []string{tc.problem}
			}
			if diff := cmp.Diff(want, reasons); diff != "" {
				t.Errorf("problems (-want +got):\n%s\n%v", diff, probs)
			}
		})
	}
}

// TestConflicts checks that the older Ingress wins a host+path, whatever the
// order of the input, and that the newer keeps its other routes.
func TestConflicts(t *testing.T) {
	svcs := []*corev1.Service{service("s", "80"), service("t", "80")}
	old := ing("old", rule("a.example.com", "Prefix /foo s:80", "Exact /x s:80"), defaultBackend("s:80"))
	young := ing("young",
		rule("a.example.com",
			"Prefix /foo/ t:80",  // same as /foo
			"Impl /foo t:80",     // ImplementationSpecific is Prefix
			"Exact /foo t:80",    // another type: no conflict
			"Prefix /bar t:80",   // no conflict
			"Exact /x t:80",      // conflict
			"Prefix /bar/ t:80"), // conflicts with its own earlier path
		rule("b.example.com", "Prefix /foo t:80"), // another host: no conflict
		defaultBackend("t:80"),
	)
	wantRoutes := []string{
		"old spec.rules[0].http.paths[0]",
		"old spec.rules[0].http.paths[1]",
		"young spec.rules[0].http.paths[2]",
		"young spec.rules[0].http.paths[3]",
		"young spec.rules[1].http.paths[0]",
		"old spec.defaultBackend",
	}
	wantProblems := []Problem{
		{Ingress: Ref{"default", "young"}, Field: "spec.defaultBackend", Reason: "Conflict",
			Message: "the default backend is already Ingress default/old's (older); this one is not used"},
		{Ingress: Ref{"default", "young"}, Field: "spec.rules[0].http.paths[0]", Reason: "Conflict",
			Message: `host "a.example.com" path "/foo/" (Prefix) is already routed by Ingress default/old (older); this one is not used`},
		{Ingress: Ref{"default", "young"}, Field: "spec.rules[0].http.paths[1]", Reason: "Conflict",
			Message: `host "a.example.com" path "/foo" (Prefix) is already routed by Ingress default/old (older); this one is not used`},
		{Ingress: Ref{"default", "young"}, Field: "spec.rules[0].http.paths[4]", Reason: "Conflict",
			Message: `host "a.example.com" path "/x" (Exact) is already routed by Ingress default/old (older); this one is not used`},
		{Ingress: Ref{"default", "young"}, Field: "spec.rules[0].http.paths[5]", Reason: "Conflict",
			Message: `host "a.example.com" path "/bar/" (Prefix) is already routed by an earlier path of this Ingress; this one is not used`},
	}
	for _, order := range [][]Ingress{
		{{CreateIndex: 1, Ingress: old}, {CreateIndex: 2, Ingress: young}},
		{{CreateIndex: 2, Ingress: young}, {CreateIndex: 1, Ingress: old}},
	} {
		tab, probs := Build(Input{Ingresses: order, Services: svcs})
		if diff := cmp.Diff(wantRoutes, served(tab)); diff != "" {
			t.Errorf("routes (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(wantProblems, probs); diff != "" {
			t.Errorf("problems (-want +got):\n%s", diff)
		}
		if r, _ := tab.Match("a.example.com", "/foo/bar"); r.Backend.Service.Name != "s" {
			t.Errorf("/foo/bar goes to %v, want the older Ingress's s", r.Backend.Service)
		}
		if r, _ := tab.Match("a.example.com", "/foo"); r.Backend.Service.Name != "t" {
			t.Errorf("/foo goes to %v, want the Exact rule's t", r.Backend.Service)
		}
	}

	// The same age: the first by namespace/name wins.
	a := ing("a", rule("a.example.com", "Prefix / s:80"))
	b := ing("b", rule("a.example.com", "Prefix / t:80"))
	tab, probs := Build(Input{Ingresses: []Ingress{{CreateIndex: 7, Ingress: b}, {CreateIndex: 7, Ingress: a}}, Services: svcs})
	if diff := cmp.Diff([]string{"a spec.rules[0].http.paths[0]"}, served(tab)); diff != "" {
		t.Errorf("routes at the same age (-want +got):\n%s", diff)
	}
	if len(probs) != 1 || probs[0].Ingress.Name != "b" {
		t.Errorf("problems at the same age: %v", probs)
	}
}

// TestBackends checks how backends resolve to service ports and endpoints.
func TestBackends(t *testing.T) {
	web := service("web", "80/http", "443/https", "53/dns/UDP")
	ext := service("ext", "80")
	ext.Spec.Type = corev1.ServiceTypeExternalName
	other := service("web", "80/http")
	other.Namespace = "other"
	otherSlice := slice("web", "http", 9999, "10.9.9.9")
	otherSlice.Namespace = "other"
	fqdn := slice("web", "http", 8080, "example.com")
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	in := Input{
		Services: []*corev1.Service{web, ext, other},
		EndpointSlices: []*discoveryv1.EndpointSlice{
			slice("web", "http", 8080, "10.0.0.2", "10.0.0.1", "10.0.0.3-", "10.0.0.4?"),
			slice("web", "http", 8081, "10.0.1.1"), // pods whose named port resolved elsewhere
			slice("web", "https", 8443, "10.0.0.1", "10.0.0.2-"),
			otherSlice, fqdn,
		},
	}
	resource := ing("res", rule("r.example.com", "Prefix / x:80"))
	resource.Spec.Rules[0].HTTP.Paths[0].Backend = networkingv1.IngressBackend{Resource: &corev1.TypedLocalObjectReference{Kind: "Bucket", Name: "b"}}
	noPort := ing("noport", rule("n.example.com", "Prefix / web:80"))
	noPort.Spec.Rules[0].HTTP.Paths[0].Backend.Service.Port = networkingv1.ServiceBackendPort{}
	in.Ingresses = aged(
		ing("ok", rule("a.example.com", "Prefix /num web:80", "Prefix /name web:http", "Prefix /tls web:https")),
		ing("bad", rule("b.example.com",
			"Prefix /nosvc missing:80",
			"Prefix /noport web:8080",
			"Prefix /noname web:grpc",
			"Prefix /udp web:dns",
			"Prefix /ext ext:80",
		)),
		resource, noPort,
	)
	tab, probs := Build(in)
	var got []Backend
	for _, r := range tab.Routes() {
		got = append(got, r.Backend)
	}
	web80 := []string{"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.4:8080", "10.0.1.1:8081"}
	want := []Backend{
		{Service: Ref{"default", "web"}, Port: "80", ServicePort: 80, Endpoints: web80},
		{Service: Ref{"default", "web"}, Port: "http", ServicePort: 80, Endpoints: web80},
		{Service: Ref{"default", "web"}, Port: "https", ServicePort: 443, Endpoints: []string{"10.0.0.1:8443"}},
		{Service: Ref{"default", "missing"}, Port: "80", Unavailable: "service default/missing does not exist"},
		{Service: Ref{"default", "web"}, Port: "8080", Unavailable: "service default/web has no port 8080"},
		{Service: Ref{"default", "web"}, Port: "grpc", Unavailable: "service default/web has no port grpc"},
		{Service: Ref{"default", "web"}, Port: "dns", Unavailable: "port dns of service default/web is not TCP"},
		{Service: Ref{"default", "ext"}, Port: "80", Unavailable: "service default/ext is an ExternalName service"},
		{Unavailable: "resource backends are not supported"},
		{Service: Ref{"default", "web"}, Unavailable: "no port of service default/web named"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("backends (-want +got):\n%s", diff)
	}
	wantProblems := []Problem{
		{Ingress: Ref{"default", "bad"}, Field: "spec.rules[0].http.paths[0].backend.service.name", Reason: "ServiceNotFound",
			Message: "Service default/missing does not exist: the route answers 503"},
		{Ingress: Ref{"default", "bad"}, Field: "spec.rules[0].http.paths[1].backend.service.port.number", Reason: "PortNotFound",
			Message: "Service default/web has no port 8080 (it has ports 80 (http), 443 (https), 53 (dns)): the route answers 503"},
		{Ingress: Ref{"default", "bad"}, Field: "spec.rules[0].http.paths[2].backend.service.port.name", Reason: "PortNotFound",
			Message: "Service default/web has no port grpc (it has ports 80 (http), 443 (https), 53 (dns)): the route answers 503"},
		{Ingress: Ref{"default", "bad"}, Field: "spec.rules[0].http.paths[3].backend.service.port.name", Reason: "PortNotFound",
			Message: "port dns of Service default/web is UDP, not TCP: the route answers 503"},
		{Ingress: Ref{"default", "bad"}, Field: "spec.rules[0].http.paths[4].backend.service.name", Reason: "UnsupportedBackend",
			Message: "Service default/ext is of type ExternalName, which is not supported: the route answers 503"},
		{Ingress: Ref{"default", "res"}, Field: "spec.rules[0].http.paths[0].backend.resource", Reason: "UnsupportedBackend",
			Message: "resource backends are not supported: the route answers 503"},
		{Ingress: Ref{"default", "noport"}, Field: "spec.rules[0].http.paths[0].backend.service.port", Reason: "PortNotFound",
			Message: "no port number or name: the route answers 503"},
	}
	if diff := cmp.Diff(wantProblems, probs); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

// TestTLS checks certificates by host, the problems of bad Secrets, and the
// redirect flags.
func TestTLS(t *testing.T) {
	fooCert := newCert(t, "foo.example.com")
	wildCert := newCert(t, "*.example.com")
	defCert := newCert(t, "default.test")
	otherCert := newCert(t, "foo.example.com")
	mismatched := tlsSecret("mismatched", testCert{certPEM: fooCert.certPEM, keyPEM: otherCert.keyPEM})
	opaque := tlsSecret("opaque", fooCert)
	opaque.Type = corev1.SecretTypeOpaque
	fromStringData := tlsSecret("stringdata", defCert)
	fromStringData.StringData = map[string]string{corev1.TLSCertKey: string(defCert.certPEM), corev1.TLSPrivateKeyKey: string(defCert.keyPEM)}
	fromStringData.Data = nil
	in := Input{
		Services: []*corev1.Service{service("s", "80")},
		Secrets: []*corev1.Secret{
			tlsSecret("foo", fooCert), tlsSecret("wild", wildCert), tlsSecret("other", otherCert),
			mismatched, opaque, fromStringData,
		},
		Ingresses: aged(
			ing("foo", tlsEntry("foo", "foo.example.com"), rule("foo.example.com", "Prefix / s:80")),
			ing("wild", tlsEntry("wild", "*.example.com"), rule("*.example.com", "Prefix / s:80"), rule("bar.example.com", "Prefix / s:80")),
			ing("optout", annotate(AnnotationSSLRedirect, "false"), rule("foo.example.com", "Prefix /plain s:80")),
			ing("optout-nginx", annotate(AnnotationNginxSSLRedirect, "false"), rule("foo.example.com", "Prefix /plain2 s:80")),
			ing("nocert",
				tlsEntry("missing", "missing.example.com"),
				tlsEntry("opaque", "opaque.example.com"),
				tlsEntry("mismatched", "mismatched.example.com"),
				tlsEntry("", "unnamed.example.com"),
				rule("missing.example.com", "Prefix / s:80"),
				rule("plain.test", "Prefix / s:80"),
				rule("", "Prefix /anyhost s:80"),
			),
			ing("conflict", tlsEntry("other", "foo.example.com"), rule("foo.example.com", "Prefix /c s:80")),
			ing("wronghost", tlsEntry("foo", "wrong.example.com", "foo.example.com")),
			ing("default-cert", tlsEntry("stringdata")),
		),
	}
	tab, probs := Build(in)
	wantProblems := []Problem{
		{Ingress: Ref{"default", "nocert"}, Field: "spec.tls[0].secretName", Reason: "TLSSecret",
			Message: "Secret default/missing does not exist: missing.example.com served over HTTP only, without certificate"},
		{Ingress: Ref{"default", "nocert"}, Field: "spec.tls[1].secretName", Reason: "TLSSecret",
			Message: `Secret default/opaque is of type "Opaque", not kubernetes.io/tls: opaque.example.com served over HTTP only, without certificate`},
		{Ingress: Ref{"default", "nocert"}, Field: "spec.tls[2].secretName", Reason: "TLSSecret",
			Message: "Secret default/mismatched: tls.crt and tls.key: tls: private key does not match public key: mismatched.example.com served over HTTP only, without certificate"},
		{Ingress: Ref{"default", "nocert"}, Field: "spec.tls[3].secretName", Reason: "TLSSecret",
			Message: "no secret named: unnamed.example.com served over HTTP only, without certificate"},
		{Ingress: Ref{"default", "conflict"}, Field: "spec.tls[0].hosts[0]", Reason: "Conflict",
			Message: `host "foo.example.com" already has the certificate of Secret default/foo from Ingress default/foo (older); Secret default/other is not used for it`},
		{Ingress: Ref{"default", "wronghost"}, Field: "spec.tls[0].hosts[0]", Reason: "CertificateHost",
			Message: `the certificate of Secret default/foo does not cover host "wrong.example.com" (it covers foo.example.com): clients will reject it`},
	}
	if diff := cmp.Diff(wantProblems, probs); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}

	leaf := func(c *tls.Certificate) string {
		if c == nil {
			return ""
		}
		return c.Leaf.DNSNames[0]
	}
	for _, tc := range []struct{ sni, want string }{
		{"foo.example.com", "foo.example.com"},
		{"FOO.example.com", "foo.example.com"},
		{"bar.example.com", "*.example.com"},
		{"missing.example.com", "*.example.com"},
		{"a.b.example.com", "default.test"},
		{"example.com", "default.test"},
		{"", "default.test"},
	} {
		c, ok := tab.Certificate(tc.sni)
		if got := leaf(c); got != tc.want || !ok {
			t.Errorf("Certificate(%q) = %q, %v; want %q", tc.sni, got, ok, tc.want)
		}
	}
	if c, ok := Empty().Certificate("foo.example.com"); ok || c != nil {
		t.Errorf("Empty().Certificate = %v, %v", c, ok)
	}

	for _, tc := range []struct {
		host, path string
		redirect   bool
	}{
		{"foo.example.com", "/", true},
		{"foo.example.com", "/c", true},       // the conflict lost the certificate, not the route
		{"foo.example.com", "/plain", false},  // keelson.dev/ssl-redirect: "false"
		{"foo.example.com", "/plain2", false}, // nginx.ingress.kubernetes.io/ssl-redirect: "false"
		{"x.example.com", "/", true},          // a wildcard host with a wildcard certificate
		{"bar.example.com", "/", true},        // an exact host under a wildcard certificate
		{"missing.example.com", "/", true},    // its own Secret is missing, but the wildcard covers it
		{"plain.test", "/", false},            // no certificate: HTTP only
		{"plain.test", "/anyhost", false},     // rules without host are never redirected
	} {
		r, ok := tab.Match(tc.host, tc.path)
		if !ok {
			t.Errorf("Match(%q, %q): no route", tc.host, tc.path)
			continue
		}
		if r.SSLRedirect != tc.redirect {
			t.Errorf("Match(%q, %q).SSLRedirect = %v, want %v", tc.host, tc.path, r.SSLRedirect, tc.redirect)
		}
	}

	// Without the wildcard, a host whose Secret is bad is served on HTTP
	// and HTTPS falls back to the default certificate.
	in.Ingresses = append(in.Ingresses[:1], in.Ingresses[2:]...)
	tab, _ = Build(in)
	if r, ok := tab.Match("missing.example.com", "/"); !ok || r.SSLRedirect {
		t.Errorf("missing.example.com: route %v, %v; want served without redirect", r, ok)
	}
	if c, _ := tab.Certificate("missing.example.com"); leaf(c) != "default.test" {
		t.Errorf("missing.example.com certificate = %q, want the default one", leaf(c))
	}
}

// TestInvalid checks hosts and paths that manifest validation would reject.
func TestInvalid(t *testing.T) {
	bad := ing("bad",
		rule("Not_A_Host", "Prefix / s:80"),
		rule("10.0.0.1", "Prefix / s:80"),
		rule("*.*.example.com", "Prefix / s:80"),
		rule("ok.example.com", "Prefix relative s:80", "Exact / s:80", "Odd /x s:80"),
		tlsEntry("x", "bad host"),
	)
	bad.Spec.Rules[3].HTTP.Paths = append(bad.Spec.Rules[3].HTTP.Paths, networkingv1.HTTPIngressPath{Path: "/", Backend: svcBackend("s:80")})
	tab, probs := Build(Input{Ingresses: aged(bad), Services: []*corev1.Service{service("s", "80")}})
	if diff := cmp.Diff([]string{"bad spec.rules[3].http.paths[1]"}, served(tab)); diff != "" {
		t.Errorf("routes (-want +got):\n%s", diff)
	}
	var got []string
	for _, p := range probs {
		if !strings.Contains(p.Message, "not served") && p.Reason != "InvalidHost" {
			t.Errorf("problem %v does not say the rule is not served", p)
		}
		got = append(got, p.Field+" "+p.Reason)
	}
	want := []string{
		"spec.tls[0].hosts[0] InvalidHost",
		"spec.rules[0].host InvalidHost",
		"spec.rules[1].host InvalidHost",
		"spec.rules[2].host InvalidHost",
		"spec.rules[3].http.paths[0].path InvalidPath",
		"spec.rules[3].http.paths[2].pathType InvalidPath",
		"spec.rules[3].http.paths[3].pathType InvalidPath",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s\n%v", diff, probs)
	}
}

// TestBuildLeavesInputAlone checks that Build modifies none of its inputs
// (they are the store's immutable objects).
func TestBuildLeavesInputAlone(t *testing.T) {
	c := newCert(t, "foo.example.com")
	mk := func() Input {
		return Input{
			Ingresses: []Ingress{{CreateIndex: 2, Ingress: ing("b", tlsEntry("foo", "FOO.example.com"), rule("FOO.example.com", "Impl \"\" s:80"))},
				{CreateIndex: 1, Ingress: ing("a", inNamespace(""), rule("foo.example.com", "Prefix /x s:80"))}},
			Classes:        nil,
			Services:       []*corev1.Service{service("s", "80")},
			EndpointSlices: []*discoveryv1.EndpointSlice{slice("s", "", 80, "10.0.0.2", "10.0.0.1")},
			Secrets:        []*corev1.Secret{tlsSecret("foo", c)},
		}
	}
	in, want := mk(), mk()
	Build(in)
	if diff := cmp.Diff(want, in); diff != "" {
		t.Errorf("input changed (-before +after):\n%s", diff)
	}
}

// TestPreviousTable: certificates of unchanged Secrets come from the
// previous table; changed ones are read again.
func TestPreviousTable(t *testing.T) {
	c1, c2 := newCert(t, "a.example.com"), newCert(t, "a.example.com")
	in := Input{
		Ingresses: aged(ing("i", tlsEntry("cert", "a.example.com"), tlsEntry("bad", "b.example.com"), rule("a.example.com", "Prefix / s:80"))),
		Services:  []*corev1.Service{service("s", "80")},
		Secrets:   []*corev1.Secret{tlsSecret("cert", c1), tlsSecret("bad", testCert{certPEM: c1.certPEM, keyPEM: c2.keyPEM})},
	}
	first, probs1 := Build(in)
	in.Previous = first
	in.Secrets[0] = tlsSecret("cert", c1) // a new object with the same bytes
	second, probs2 := Build(in)
	got1, _ := first.Certificate("a.example.com")
	got2, _ := second.Certificate("a.example.com")
	if got1 != got2 {
		t.Errorf("an unchanged Secret was parsed again")
	}
	if diff := cmp.Diff(probs1, probs2); diff != "" || len(probs2) != 1 {
		t.Errorf("problems with a previous table (-first +second):\n%s", diff)
	}
	in.Previous = second
	in.Secrets[0] = tlsSecret("cert", c2)
	third, _ := Build(in)
	got3, _ := third.Certificate("a.example.com")
	if got3 == got2 || got3.Leaf.SerialNumber.Cmp(got2.Leaf.SerialNumber) == 0 {
		t.Errorf("a changed Secret kept its old certificate")
	}
}
