package ingress

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	utilvalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// ControllerName is the spec.controller of the IngressClasses Keelson serves.
const ControllerName = "keelson.dev/ingress"

// LegacyClass is the value of the legacy kubernetes.io/ingress.class
// annotation that selects Keelson.
const LegacyClass = "keelson"

// Annotations Build reads.
const (
	// AnnotationLegacyClass is the class annotation from before
	// spec.ingressClassName.
	AnnotationLegacyClass = "kubernetes.io/ingress.class"
	// AnnotationSSLRedirect set to "false" on an Ingress keeps its routes
	// on plain HTTP even when their host has a certificate.
	AnnotationSSLRedirect = "keelson.dev/ssl-redirect"
	// AnnotationNginxSSLRedirect is ingress-nginx's name for the same, honoured
	// so that existing manifests work unchanged.
	AnnotationNginxSSLRedirect = "nginx.ingress.kubernetes.io/ssl-redirect"
)

const defaultBackendField = "spec.defaultBackend"

// Ingress is an Ingress with its age.
type Ingress struct {
	// CreateIndex orders Ingresses by age: smaller is older. The older of
	// two conflicting Ingresses wins.
	CreateIndex uint64
	Ingress     *networkingv1.Ingress
}

// Input is everything a Table is built from. Objects with an empty namespace
// are taken to be in "default".
type Input struct {
	Ingresses []Ingress
	Classes   []*networkingv1.IngressClass
	// Services are the Services as the controller completed them.
	Services []*corev1.Service
	// EndpointSlices are the Services' slices, found by their
	// kubernetes.io/service-name label and namespace.
	EndpointSlices []*discoveryv1.EndpointSlice
	// Secrets are the Secrets the Ingresses' TLS entries may name.
	Secrets []*corev1.Secret
	// Previous, when set, is a table built before: the certificates of
	// Secrets whose tls.crt and tls.key have not changed since are taken
	// from it rather than parsed again (an RSA key costs about 0.1 ms), so
	// that rebuilding on every endpoint change stays cheap.
	Previous *Table
}

// Problem is something wrong with one Ingress. The Ingress is still served
// as far as it can be.
type Problem struct {
	Ingress Ref
	// Field is the field path, such as
	// "spec.rules[0].http.paths[1].backend.service.port.name".
	Field string
	// Reason is a short CamelCase cause, for events: IngressClassNotFound,
	// InvalidHost, InvalidPath, Conflict, ServiceNotFound, PortNotFound,
	// UnsupportedBackend, TLSSecret, CertificateHost.
	Reason  string
	Message string
}

func (p Problem) String() string {
	return fmt.Sprintf("Ingress %s: %s: %s", p.Ingress, p.Field, p.Message)
}

// Build makes the table of the Ingresses Keelson serves, and the problems of
// those Ingresses. It is deterministic: the same input gives the same table
// and the same problems in the same order.
func Build(in Input) (*Table, []Problem) {
	b := newBuilder(in)
	ings := make([]Ingress, 0, len(in.Ingresses))
	for _, ing := range in.Ingresses {
		if ing.Ingress != nil {
			ings = append(ings, ing)
		}
	}
	slices.SortStableFunc(ings, func(x, y Ingress) int {
		if x.CreateIndex != y.CreateIndex {
			if x.CreateIndex < y.CreateIndex {
				return -1
			}
			return 1
		}
		if c := strings.Compare(ns(x.Ingress.Namespace), ns(y.Ingress.Namespace)); c != 0 {
			return c
		}
		return strings.Compare(x.Ingress.Name, y.Ingress.Name)
	})
	for _, ing := range ings {
		if b.ours(ing.Ingress) {
			b.add(ing.Ingress)
		}
	}
	return b.finish(), b.problems
}

func ns(s string) string {
	if s == "" {
		return "default"
	}
	return s
}

// claim remembers who holds a host, path or certificate.
type claim struct {
	ingress Ref
	secret  Ref // for certificates
}

// certResult is a Secret read as a certificate: cert, or msg saying why
// not. crt and key are what it was read from.
type certResult struct {
	crt, key []byte
	cert     *tls.Certificate
	msg      string
}

type builder struct {
	ourClasses map[string]bool
	allClasses map[string]bool
	ourDefault bool
	noClasses  bool

	services map[Ref]*corev1.Service
	slices   map[Ref][]*discoveryv1.EndpointSlice
	secrets  map[Ref]*corev1.Secret
	parsed   map[Ref]certResult

	previous map[Ref]certResult

	problems []Problem
	routes   []*Route
	paths    map[string]claim // host + "\x00" + type + "\x00" + normalized path
	def      *Route
	certs    map[string]claim // host ("" for the default certificate) → claim
	certOf   map[string]*tls.Certificate
	optOut   map[Ref]bool
}

func newBuilder(in Input) *builder {
	b := &builder{
		ourClasses: map[string]bool{},
		allClasses: map[string]bool{},
		noClasses:  len(in.Classes) == 0,
		services:   map[Ref]*corev1.Service{},
		slices:     map[Ref][]*discoveryv1.EndpointSlice{},
		secrets:    map[Ref]*corev1.Secret{},
		parsed:     map[Ref]certResult{},
		paths:      map[string]claim{},
		certs:      map[string]claim{},
		certOf:     map[string]*tls.Certificate{},
		optOut:     map[Ref]bool{},
	}
	for _, c := range in.Classes {
		if c == nil {
			continue
		}
		b.allClasses[c.Name] = true
		if c.Spec.Controller == ControllerName {
			b.ourClasses[c.Name] = true
			if c.Annotations[networkingv1.AnnotationIsDefaultIngressClass] == "true" {
				b.ourDefault = true
			}
		}
	}
	for _, s := range in.Services {
		if s != nil {
			b.services[Ref{ns(s.Namespace), s.Name}] = s
		}
	}
	for _, s := range in.EndpointSlices {
		if s == nil {
			continue
		}
		if svc := s.Labels[discoveryv1.LabelServiceName]; svc != "" {
			r := Ref{ns(s.Namespace), svc}
			b.slices[r] = append(b.slices[r], s)
		}
	}
	for _, s := range in.Secrets {
		if s != nil {
			b.secrets[Ref{ns(s.Namespace), s.Name}] = s
		}
	}
	if in.Previous != nil {
		b.previous = in.Previous.parsed
	}
	return b
}

func (b *builder) problem(ing Ref, f *field.Path, reason, format string, args ...any) {
	b.problems = append(b.problems, Problem{Ingress: ing, Field: f.String(), Reason: reason, Message: fmt.Sprintf(format, args...)})
}

// ours tells whether Keelson serves ing (see the package doc).
func (b *builder) ours(ing *networkingv1.Ingress) bool {
	if c := ing.Spec.IngressClassName; c != nil {
		if b.ourClasses[*c] {
			return true
		}
		if !b.allClasses[*c] {
			b.problem(Ref{ns(ing.Namespace), ing.Name}, field.NewPath("spec", "ingressClassName"), "IngressClassNotFound",
				"IngressClass %q does not exist, so no controller serves this Ingress (Keelson serves classes with spec.controller %s)", *c, ControllerName)
		}
		return false
	}
	if c, ok := ing.Annotations[AnnotationLegacyClass]; ok {
		return c == LegacyClass || b.ourClasses[c]
	}
	return b.ourDefault || b.noClasses
}

func (b *builder) add(ing *networkingv1.Ingress) {
	ref := Ref{ns(ing.Namespace), ing.Name}
	spec := field.NewPath("spec")
	b.optOut[ref] = ing.Annotations[AnnotationSSLRedirect] == "false" || ing.Annotations[AnnotationNginxSSLRedirect] == "false"

	for i, t := range ing.Spec.TLS {
		tp := spec.Child("tls").Index(i)
		var hosts []string
		for j, h := range t.Hosts {
			if msg := invalidHost(h); msg != "" {
				b.problem(ref, tp.Child("hosts").Index(j), "InvalidHost", "%s", msg)
				continue
			}
			hosts = append(hosts, strings.ToLower(h))
		}
		if len(t.Hosts) > 0 && len(hosts) == 0 {
			continue
		}
		if t.SecretName == "" {
			b.problem(ref, tp.Child("secretName"), "TLSSecret", "no secret named: %s", servedWithout(hosts))
			continue
		}
		sref := Ref{ref.Namespace, t.SecretName}
		res := b.certificate(sref)
		if res.cert == nil {
			b.problem(ref, tp.Child("secretName"), "TLSSecret", "%s: %s", res.msg, servedWithout(hosts))
			continue
		}
		if len(hosts) == 0 {
			b.claimCert(ref, tp.Child("secretName"), "", sref, res.cert)
			continue
		}
		for j, h := range hosts {
			if !b.claimCert(ref, tp.Child("hosts").Index(j), h, sref, res.cert) {
				continue
			}
			if leaf := res.cert.Leaf; leaf != nil {
				check := h
				if strings.HasPrefix(h, "*.") {
					check = "wildcard-check" + h[1:]
				}
				if err := leaf.VerifyHostname(check); err != nil {
					b.problem(ref, tp.Child("hosts").Index(j), "CertificateHost",
						"the certificate of Secret %s does not cover host %q (it covers %s): clients will reject it", sref, h, certNames(leaf.DNSNames, leaf.Subject.CommonName))
				}
			}
		}
	}

	if d := ing.Spec.DefaultBackend; d != nil {
		dp := spec.Child("defaultBackend")
		r := &Route{Ingress: ref, Field: defaultBackendField, Backend: b.backend(ref, d, dp)}
		if b.def != nil {
			b.problem(ref, dp, "Conflict", "the default backend is already Ingress %s's (older); this one is not used", b.def.Ingress)
		} else {
			b.def = r
		}
	}

	for i, rule := range ing.Spec.Rules {
		rp := spec.Child("rules").Index(i)
		host := strings.ToLower(rule.Host)
		if rule.Host != "" {
			if msg := invalidHost(rule.Host); msg != "" {
				b.problem(ref, rp.Child("host"), "InvalidHost", "%s: the rule is not served", msg)
				continue
			}
		}
		if rule.HTTP == nil {
			continue
		}
		for j, p := range rule.HTTP.Paths {
			pp := rp.Child("http", "paths").Index(j)
			typ, pth, ok := b.pathOf(ref, p, pp)
			if !ok {
				continue
			}
			key := host + "\x00" + string(typ) + "\x00" + prefixKey(typ, pth)
			if c, taken := b.paths[key]; taken {
				who := "Ingress " + c.ingress.String() + " (older)"
				if c.ingress == ref {
					who = "an earlier path of this Ingress"
				}
				b.problem(ref, pp, "Conflict", "host %s path %q (%s) is already routed by %s; this one is not used", hostName(host), p.Path, typ, who)
				continue
			}
			b.paths[key] = claim{ingress: ref}
			b.routes = append(b.routes, &Route{
				Ingress:  ref,
				Host:     host,
				Path:     pth,
				PathType: typ,
				Field:    pp.String(),
				Backend:  b.backend(ref, &p.Backend, pp.Child("backend")),
			})
		}
	}
}

func hostName(h string) string {
	if h == "" {
		return "(any)"
	}
	return strconv.Quote(h)
}

func servedWithout(hosts []string) string {
	if len(hosts) == 0 {
		return "there is no default certificate"
	}
	return fmt.Sprintf("%s served over HTTP only, without certificate", strings.Join(hosts, ", "))
}

func certNames(dns []string, cn string) string {
	if len(dns) > 0 {
		return strings.Join(dns, ", ")
	}
	if cn != "" {
		return "CN " + cn
	}
	return "no names"
}

// pathOf checks one path of a rule and returns its effective type and path.
func (b *builder) pathOf(ing Ref, p networkingv1.HTTPIngressPath, pp *field.Path) (networkingv1.PathType, string, bool) {
	if p.PathType == nil {
		b.problem(ing, pp.Child("pathType"), "InvalidPath", "pathType must be specified: the path is not served")
		return "", "", false
	}
	switch *p.PathType {
	case networkingv1.PathTypeExact, networkingv1.PathTypePrefix:
		if !strings.HasPrefix(p.Path, "/") {
			b.problem(ing, pp.Child("path"), "InvalidPath", "%q must be an absolute path: the path is not served", p.Path)
			return "", "", false
		}
		return *p.PathType, p.Path, true
	case networkingv1.PathTypeImplementationSpecific:
		if p.Path == "" {
			return networkingv1.PathTypePrefix, "/", true
		}
		if !strings.HasPrefix(p.Path, "/") {
			b.problem(ing, pp.Child("path"), "InvalidPath", "%q must be an absolute path: the path is not served", p.Path)
			return "", "", false
		}
		return networkingv1.PathTypePrefix, p.Path, true
	}
	b.problem(ing, pp.Child("pathType"), "InvalidPath", "unsupported path type %q (Exact, Prefix or ImplementationSpecific): the path is not served", *p.PathType)
	return "", "", false
}

// prefixKey is a Prefix path less its trailing slash: "/foo/" and "/foo"
// match the same requests.
func prefixKey(typ networkingv1.PathType, p string) string {
	if typ == networkingv1.PathTypePrefix && len(p) > 1 {
		return strings.TrimRight(p, "/")
	}
	return p
}

// invalidHost says what is wrong with an Ingress host, as the Kubernetes API
// validation does, or "" when nothing is.
func invalidHost(h string) string {
	var msgs []string
	if strings.HasPrefix(h, "*.") {
		msgs = utilvalidation.IsWildcardDNS1123Subdomain(h)
	} else {
		msgs = utilvalidation.IsDNS1123Subdomain(h)
		if net.ParseIP(h) != nil {
			msgs = append(msgs, "must be a DNS name, not an IP address")
		}
	}
	if len(msgs) == 0 {
		return ""
	}
	return fmt.Sprintf("invalid host %q: %s", h, strings.Join(msgs, "; "))
}

func (b *builder) claimCert(ing Ref, f *field.Path, host string, secret Ref, cert *tls.Certificate) bool {
	if c, taken := b.certs[host]; taken {
		if c.secret != secret {
			what := "host " + strconv.Quote(host)
			if host == "" {
				what = "the default certificate (a TLS entry without hosts)"
			}
			b.problem(ing, f, "Conflict", "%s already has the certificate of Secret %s from Ingress %s (older); Secret %s is not used for it", what, c.secret, c.ingress, secret)
			return false
		}
		return true
	}
	b.certs[host] = claim{ingress: ing, secret: secret}
	b.certOf[host] = cert
	return true
}

// certificate reads a TLS Secret, once per build.
func (b *builder) certificate(r Ref) certResult {
	if res, ok := b.parsed[r]; ok {
		return res
	}
	res := b.parseSecret(r, b.secrets[r])
	b.parsed[r] = res
	return res
}

func (b *builder) parseSecret(r Ref, s *corev1.Secret) certResult {
	if s == nil {
		return certResult{msg: fmt.Sprintf("Secret %s does not exist", r)}
	}
	if s.Type != corev1.SecretTypeTLS {
		return certResult{msg: fmt.Sprintf("Secret %s is of type %q, not %s", r, s.Type, corev1.SecretTypeTLS)}
	}
	get := func(k string) []byte {
		if v, ok := s.StringData[k]; ok {
			return []byte(v)
		}
		return s.Data[k]
	}
	crt, key := get(corev1.TLSCertKey), get(corev1.TLSPrivateKeyKey)
	if len(crt) == 0 || len(key) == 0 {
		return certResult{msg: fmt.Sprintf("Secret %s needs both %s and %s", r, corev1.TLSCertKey, corev1.TLSPrivateKeyKey)}
	}
	if prev, ok := b.previous[r]; ok && bytes.Equal(prev.crt, crt) && bytes.Equal(prev.key, key) {
		return prev
	}
	cert, err := tls.X509KeyPair(crt, key)
	if err != nil {
		// The errors of X509KeyPair name no key material.
		return certResult{crt: crt, key: key, msg: fmt.Sprintf("Secret %s: %s and %s: %v", r, corev1.TLSCertKey, corev1.TLSPrivateKeyKey, err)}
	}
	return certResult{crt: crt, key: key, cert: &cert}
}

// backend resolves an Ingress backend to a Service port and its ready
// endpoints.
func (b *builder) backend(ing Ref, ib *networkingv1.IngressBackend, p *field.Path) Backend {
	if ib.Resource != nil {
		b.problem(ing, p.Child("resource"), "UnsupportedBackend", "resource backends are not supported: the route answers 503")
		return Backend{Unavailable: "resource backends are not supported"}
	}
	if ib.Service == nil {
		b.problem(ing, p.Child("service"), "UnsupportedBackend", "no service: the route answers 503")
		return Backend{Unavailable: "the backend names no service"}
	}
	sp := p.Child("service")
	sref := Ref{ing.Namespace, ib.Service.Name}
	be := Backend{Service: sref, Port: ib.Service.Port.Name}
	portField := sp.Child("port", "name")
	if ib.Service.Port.Number != 0 {
		be.Port = strconv.Itoa(int(ib.Service.Port.Number))
		portField = sp.Child("port", "number")
	}
	svc := b.services[sref]
	if svc == nil {
		b.problem(ing, sp.Child("name"), "ServiceNotFound", "Service %s does not exist: the route answers 503", sref)
		be.Unavailable = fmt.Sprintf("service %s does not exist", sref)
		return be
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		b.problem(ing, sp.Child("name"), "UnsupportedBackend", "Service %s is of type ExternalName, which is not supported: the route answers 503", sref)
		be.Unavailable = fmt.Sprintf("service %s is an ExternalName service", sref)
		return be
	}
	if be.Port == "" {
		b.problem(ing, sp.Child("port"), "PortNotFound", "no port number or name: the route answers 503")
		be.Unavailable = fmt.Sprintf("no port of service %s named", sref)
		return be
	}
	var port *corev1.ServicePort
	for i := range svc.Spec.Ports {
		s := &svc.Spec.Ports[i]
		if (ib.Service.Port.Number != 0 && s.Port == ib.Service.Port.Number) || (ib.Service.Port.Number == 0 && s.Name == ib.Service.Port.Name) {
			port = s
			break
		}
	}
	if port == nil {
		var have []string
		for _, s := range svc.Spec.Ports {
			d := strconv.Itoa(int(s.Port))
			if s.Name != "" {
				d += " (" + s.Name + ")"
			}
			have = append(have, d)
		}
		has := "no ports"
		if len(have) > 0 {
			has = "ports " + strings.Join(have, ", ")
		}
		b.problem(ing, portField, "PortNotFound", "Service %s has no port %s (it has %s): the route answers 503", sref, be.Port, has)
		be.Unavailable = fmt.Sprintf("service %s has no port %s", sref, be.Port)
		return be
	}
	if port.Protocol != "" && port.Protocol != corev1.ProtocolTCP {
		b.problem(ing, portField, "PortNotFound", "port %s of Service %s is %s, not TCP: the route answers 503", be.Port, sref, port.Protocol)
		be.Unavailable = fmt.Sprintf("port %s of service %s is not TCP", be.Port, sref)
		return be
	}
	be.ServicePort = port.Port
	be.Endpoints = readyEndpoints(b.slices[sref], port.Name)
	return be
}

// readyEndpoints lists the ready endpoints of the slices' TCP port named
// portName as "ip:port", sorted and without duplicates. A ready condition
// that is not set counts as ready, as the EndpointSlice API says.
func readyEndpoints(ss []*discoveryv1.EndpointSlice, portName string) []string {
	var out []string
	for _, s := range ss {
		if s.AddressType != discoveryv1.AddressTypeIPv4 && s.AddressType != discoveryv1.AddressTypeIPv6 {
			continue
		}
		var num int32
		for _, p := range s.Ports {
			name := ""
			if p.Name != nil {
				name = *p.Name
			}
			if name == portName && (p.Protocol == nil || *p.Protocol == corev1.ProtocolTCP) && p.Port != nil {
				num = *p.Port
				break
			}
		}
		if num == 0 {
			continue
		}
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && !*e.Conditions.Ready {
				continue
			}
			if len(e.Addresses) == 0 {
				continue
			}
			out = append(out, net.JoinHostPort(e.Addresses[0], strconv.Itoa(int(num))))
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// finish indexes the routes.
func (b *builder) finish() *Table {
	t := Empty()
	t.exactCerts = map[string]*tls.Certificate{}
	t.wildcardCerts = map[string]*tls.Certificate{}
	for h, c := range b.certOf {
		switch {
		case h == "":
			t.defaultCert = c
		case strings.HasPrefix(h, "*."):
			t.wildcardCerts[h[1:]] = c
		default:
			t.exactCerts[h] = c
		}
	}
	for _, r := range b.routes {
		r.SSLRedirect = r.Host != "" && !b.optOut[r.Ingress] && t.covers(r.Host)
		var rs *ruleSet
		switch {
		case r.Host == "":
			if t.anyHost == nil {
				t.anyHost = newRuleSet()
			}
			rs = t.anyHost
		case strings.HasPrefix(r.Host, "*."):
			if rs = t.wildcard[r.Host[1:]]; rs == nil {
				rs = newRuleSet()
				t.wildcard[r.Host[1:]] = rs
			}
		default:
			if rs = t.exact[r.Host]; rs == nil {
				rs = newRuleSet()
				t.exact[r.Host] = rs
			}
		}
		if r.PathType == networkingv1.PathTypeExact {
			rs.exact[r.Path] = r
		} else {
			rs.prefix[prefixKey(r.PathType, r.Path)] = r
		}
	}
	t.routes = b.routes
	t.parsed = map[Ref]certResult{}
	for r, res := range b.parsed {
		if res.crt != nil {
			t.parsed[r] = res
		}
	}
	if b.def != nil {
		t.def = b.def
		t.routes = append(t.routes, b.def)
	}
	return t
}

// covers tells whether a certificate of the table serves every name of a
// rule host: an exact host by its own or a wildcard certificate, a wildcard
// host by a wildcard certificate.
func (t *Table) covers(host string) bool {
	if strings.HasPrefix(host, "*.") {
		return t.wildcardCerts[host[1:]] != nil
	}
	if t.exactCerts[host] != nil {
		return true
	}
	i := strings.IndexByte(host, '.')
	return i > 0 && t.wildcardCerts[host[i:]] != nil
}
