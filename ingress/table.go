package ingress

import (
	"crypto/tls"
	"path"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
)

// Ref names a namespaced object.
type Ref struct {
	Namespace string
	Name      string
}

func (r Ref) String() string { return r.Namespace + "/" + r.Name }

// Route is one path rule of the table (or its default backend). It belongs
// to the Table that holds it and must not be modified.
type Route struct {
	// Ingress is the Ingress the route comes from.
	Ingress Ref
	// Host is the rule's host as written: "foo.example.com",
	// "*.example.com", or "" for a rule without host and the default backend.
	Host string
	// Path is the path as written ("/" for an empty ImplementationSpecific
	// path; "" for the default backend).
	Path string
	// PathType is Exact or Prefix (ImplementationSpecific is served as
	// Prefix and shown as Prefix); "" for the default backend.
	PathType networkingv1.PathType
	// Field is where the route is in its Ingress:
	// "spec.rules[0].http.paths[1]" or "spec.defaultBackend".
	Field string
	// Backend is where requests go.
	Backend Backend
	// SSLRedirect is true when plain HTTP requests are redirected to HTTPS:
	// the host has a valid certificate in the table and the Ingress does not
	// opt out with an ssl-redirect annotation set to "false".
	SSLRedirect bool
}

// IsDefault reports whether r is the default backend.
func (r *Route) IsDefault() bool { return r.Field == defaultBackendField }

// Backend is the Service port a route sends requests to, resolved to the
// addresses of its ready endpoints.
type Backend struct {
	// Service is the backend Service.
	Service Ref
	// Port is the service port as the Ingress names it: its number or name.
	Port string
	// ServicePort is the resolved service port number; 0 when unresolved.
	ServicePort int32
	// Endpoints are the ready endpoints as "ip:targetPort", sorted. Empty
	// when the Service has none ready (the proxy answers 503).
	Endpoints []string
	// Unavailable says why the route cannot be served at all (missing
	// Service or port, unsupported backend); such a route answers 503.
	Unavailable string
}

// Table is the routing table: hosts to ordered path rules to backends, the
// TLS certificates by host and the default backend. It is immutable once
// built and safe for concurrent use.
type Table struct {
	exact    map[string]*ruleSet // host → rules
	wildcard map[string]*ruleSet // ".example.com" (the host less its first label) → rules
	anyHost  *ruleSet            // rules without host
	def      *Route

	exactCerts    map[string]*tls.Certificate
	wildcardCerts map[string]*tls.Certificate // keyed like wildcard
	defaultCert   *tls.Certificate

	routes []*Route
	parsed map[Ref]certResult // the TLS Secrets read, for Input.Previous
}

// ruleSet is the path rules of one host.
type ruleSet struct {
	exact map[string]*Route // path → route
	// prefix holds the Prefix rules by their path less any trailing slash
	// ("/" stays "/"), so a lookup walks the request path's ancestors,
	// longest first: as many map lookups as the path has elements.
	prefix map[string]*Route
}

func newRuleSet() *ruleSet {
	return &ruleSet{exact: map[string]*Route{}, prefix: map[string]*Route{}}
}

// Empty returns a table that matches nothing and has no certificates.
func Empty() *Table {
	return &Table{exact: map[string]*ruleSet{}, wildcard: map[string]*ruleSet{}}
}

// Match finds the route for a request's host (as in the Host header, with or
// without port, any case) and URL path: the exact host's rules, then the
// wildcard host's, then the rules without host, then the default backend.
// ok is false when nothing matches and there is no default backend.
func (t *Table) Match(host, urlPath string) (*Route, bool) {
	host = normalizeHost(host)
	urlPath = cleanPath(urlPath)
	if rs := t.exact[host]; rs != nil {
		if r := rs.match(urlPath); r != nil {
			return r, true
		}
	}
	if i := strings.IndexByte(host, '.'); i > 0 {
		if rs := t.wildcard[host[i:]]; rs != nil {
			if r := rs.match(urlPath); r != nil {
				return r, true
			}
		}
	}
	if t.anyHost != nil {
		if r := t.anyHost.match(urlPath); r != nil {
			return r, true
		}
	}
	return t.def, t.def != nil
}

func (rs *ruleSet) match(p string) *Route {
	if r := rs.exact[p]; r != nil {
		return r
	}
	if len(rs.prefix) == 0 {
		return nil
	}
	// "/a/b/" and "/a/b" are the same elements.
	if len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	for {
		if r := rs.prefix[p]; r != nil {
			return r
		}
		if p == "/" {
			return nil
		}
		i := strings.LastIndexByte(p, '/')
		if i <= 0 {
			p = "/"
		} else {
			p = p[:i]
		}
	}
}

// Certificate returns the certificate for a TLS server name (SNI): the one of
// the exact host, else the one of the wildcard covering it, else the default
// certificate (a TLS entry without hosts). ok is false when there is none.
func (t *Table) Certificate(serverName string) (*tls.Certificate, bool) {
	h := normalizeHost(serverName)
	if h != "" {
		if c := t.exactCerts[h]; c != nil {
			return c, true
		}
		if i := strings.IndexByte(h, '.'); i > 0 {
			if c := t.wildcardCerts[h[i:]]; c != nil {
				return c, true
			}
		}
	}
	return t.defaultCert, t.defaultCert != nil
}

// Default returns the default backend's route, or nil.
func (t *Table) Default() *Route { return t.def }

// Routes returns every route of the table, the default backend last, in the
// order the Ingresses were read (oldest first). The routes must not be
// modified.
func (t *Table) Routes() []*Route {
	return append([]*Route(nil), t.routes...)
}

// normalizeHost drops the port and a trailing dot of a host and lowers its
// case. IPv6 literals keep their brackets.
func normalizeHost(h string) string {
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.IndexByte(h[i:], ']') < 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// cleanPath makes the path that rules are matched against: absolute, with
// "." and ".." elements resolved and repeated slashes merged, as nginx does
// for its locations; a trailing slash is kept. The request is forwarded with
// its path unchanged.
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] == '/' && !strings.Contains(p, "//") && !strings.Contains(p, "/.") {
		return p
	}
	c := path.Clean("/" + p)
	if p[len(p)-1] == '/' && c != "/" {
		c += "/"
	}
	return c
}
