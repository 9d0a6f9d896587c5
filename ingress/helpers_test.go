package ingress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The builders below make the objects of the tests short to write.

func ptr[T any](v T) *T { return &v }

type ingOpt func(*networkingv1.Ingress)

func ing(name string, opts ...ingOpt) *networkingv1.Ingress {
	i := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	for _, o := range opts {
		o(i)
	}
	return i
}

func className(c string) ingOpt {
	return func(i *networkingv1.Ingress) { i.Spec.IngressClassName = &c }
}

func annotate(k, v string) ingOpt {
	return func(i *networkingv1.Ingress) {
		if i.Annotations == nil {
			i.Annotations = map[string]string{}
		}
		i.Annotations[k] = v
	}
}

func inNamespace(ns string) ingOpt {
	return func(i *networkingv1.Ingress) { i.Namespace = ns }
}

// svcBackend is "name:80" (a port number) or "name:http" (a port name).
func svcBackend(s string) networkingv1.IngressBackend {
	name, port, _ := strings.Cut(s, ":")
	b := &networkingv1.IngressServiceBackend{Name: name}
	if n, err := strconv.Atoi(port); err == nil {
		b.Port.Number = int32(n)
	} else {
		b.Port.Name = port
	}
	return networkingv1.IngressBackend{Service: b}
}

func defaultBackend(s string) ingOpt {
	return func(i *networkingv1.Ingress) {
		b := svcBackend(s)
		i.Spec.DefaultBackend = &b
	}
}

// hpath is "Exact /foo svc:80"; the type is Exact, Prefix or Impl.
func hpath(s string) networkingv1.HTTPIngressPath {
	f := strings.Fields(s)
	typ := networkingv1.PathType(f[0])
	if typ == "Impl" {
		typ = networkingv1.PathTypeImplementationSpecific
	}
	p := f[1]
	if p == `""` {
		p = ""
	}
	return networkingv1.HTTPIngressPath{Path: p, PathType: &typ, Backend: svcBackend(f[2])}
}

func rule(host string, paths ...string) ingOpt {
	return func(i *networkingv1.Ingress) {
		r := networkingv1.IngressRule{Host: host}
		if len(paths) > 0 {
			r.HTTP = &networkingv1.HTTPIngressRuleValue{}
			for _, p := range paths {
				r.HTTP.Paths = append(r.HTTP.Paths, hpath(p))
			}
		}
		i.Spec.Rules = append(i.Spec.Rules, r)
	}
}

func tlsEntry(secret string, hosts ...string) ingOpt {
	return func(i *networkingv1.Ingress) {
		i.Spec.TLS = append(i.Spec.TLS, networkingv1.IngressTLS{Hosts: hosts, SecretName: secret})
	}
}

func class(name, controller string, isDefault bool) *networkingv1.IngressClass {
	c := &networkingv1.IngressClass{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: networkingv1.IngressClassSpec{Controller: controller}}
	if isDefault {
		c.Annotations = map[string]string{networkingv1.AnnotationIsDefaultIngressClass: "true"}
	}
	return c
}

// service has ports "80/http", "443/https" or "53/dns/UDP".
func service(name string, ports ...string) *corev1.Service {
	s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}, Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.10"}}
	for _, p := range ports {
		f := strings.Split(p, "/")
		n, _ := strconv.Atoi(f[0])
		sp := corev1.ServicePort{Port: int32(n), Protocol: corev1.ProtocolTCP}
		if len(f) > 1 {
			sp.Name = f[1]
		}
		if len(f) > 2 {
			sp.Protocol = corev1.Protocol(f[2])
		}
		s.Spec.Ports = append(s.Spec.Ports, sp)
	}
	return s
}

// slice is the endpoints of a service's port: eps are "10.0.0.1" (ready),
// "10.0.0.2-" (not ready) or "10.0.0.3?" (ready not set).
func slice(svc, portName string, port int32, eps ...string) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: svc + "-" + portName, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr(portName), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(port)}},
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{}
		switch {
		case strings.HasSuffix(e, "-"):
			ep.Conditions.Ready = ptr(false)
			e = strings.TrimSuffix(e, "-")
		case strings.HasSuffix(e, "?"):
			e = strings.TrimSuffix(e, "?")
		default:
			ep.Conditions.Ready = ptr(true)
		}
		ep.Addresses = []string{e}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

// testCert is a certificate for names, signed by a test CA, in PEM.
type testCert struct {
	certPEM, keyPEM []byte
}

var testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func newCert(t testing.TB, names ...string) testCert {
	t.Helper()
	if testCA.cert == nil {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
		if err != nil {
			t.Fatal(err)
		}
		testCA.cert, _ = x509.ParseCertificate(der)
		testCA.key = key
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, testCA.cert, &key.PublicKey, testCA.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return testCert{
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}
}

func tlsSecret(name string, c testCert) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: c.certPEM, corev1.TLSPrivateKeyKey: c.keyPEM},
	}
}

// routeID names a route shortly in test expectations:
// "ingress spec.rules[0].http.paths[1]".
func routeID(r *Route) string {
	if r == nil {
		return ""
	}
	return r.Ingress.Name + " " + r.Field
}

// served lists the ids of a table's routes.
func served(t *Table) []string {
	var out []string
	for _, r := range t.Routes() {
		out = append(out, routeID(r))
	}
	return out
}

func aged(ings ...*networkingv1.Ingress) []Ingress {
	out := make([]Ingress, len(ings))
	for i, g := range ings {
		out[i] = Ingress{CreateIndex: uint64(i + 1), Ingress: g}
	}
	return out
}
