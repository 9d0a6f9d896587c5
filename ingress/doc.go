// Package ingress turns Kubernetes networking.k8s.io/v1 Ingress objects into
// the routing table that the node agent's proxy serves (package
// nodeagent/ingress) and that the controller checks a revision against.
//
// It is pure: Build takes the objects (Ingresses with their age,
// IngressClasses, Services, EndpointSlices and TLS Secrets) and returns a
// Table and the Problems found, with no goroutines, no I/O and no clock. A
// Table is immutable once built and safe for concurrent use; a change of any
// input means building a new Table (the proxy swaps tables atomically).
// Build never modifies its inputs.
//
// # Which Ingresses
//
// An Ingress is served when its spec.ingressClassName names an IngressClass
// whose spec.controller is ControllerName; when it names no class but carries
// the legacy annotation kubernetes.io/ingress.class with the value "keelson"
// (or the name of one of our classes); or when it names no class at all and
// one of our classes is annotated ingressclass.kubernetes.io/is-default-class:
// "true". A cluster that has no IngressClass objects at all serves every
// Ingress without a class name and without the legacy annotation, so that a
// repository of plain Ingresses works without declaring a class. Ingresses of
// other controllers are ignored; one naming a class that does not exist gets
// a Problem.
//
// # Matching
//
// Hosts are exact ("foo.example.com") or wildcards ("*.example.com", which
// matches exactly one more label: "a.example.com" but neither "example.com"
// nor "a.b.example.com"). A request's host is compared without its port,
// case-insensitively. Rules are tried by host specificity: the rules of the
// exact host first, then those of the wildcard host, then the rules without
// a host (which match any host); within a host, Exact paths before Prefix
// paths, and longer prefixes before shorter ones. Prefix matching is by path
// element: "/foo" (and "/foo/") matches "/foo", "/foo/" and "/foo/bar" but
// not "/foobar". ImplementationSpecific paths are treated as Prefix (an empty
// one as "/"). When no rule matches, the default backend (spec.defaultBackend
// of the oldest Ingress that has one) answers; without one, nothing matches.
// Rules of every Ingress for the same host are merged.
//
// # Conflicts and problems
//
// Ingresses are ordered by age (Ingress.CreateIndex, smaller is older; ties
// by namespace/name). When two claim the same host, path and path type (after
// the normalisation above), or the default backend, or different
// certificates for the same host, the older wins and the newer gets a
// Problem, keeping its other routes. A backend whose Service or service port
// does not exist, or that is not a Service, gets a Problem and its route stays
// in the table answering 503. A TLS entry whose Secret is missing, is not of
// type kubernetes.io/tls, or whose key does not match its certificate gets a
// Problem and is left out: its hosts are still served over plain HTTP (and
// are not redirected to HTTPS); over HTTPS, a handshake for them gets the
// default certificate (a TLS entry without hosts) if there is one, else the
// proxy's fallback certificate if it has one, and fails otherwise. An invalid host (manifest validation rejects those already, but
// Build does not rely on it) gets a Problem and its rule is left out.
package ingress
