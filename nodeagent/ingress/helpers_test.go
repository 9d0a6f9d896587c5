package ingress

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	routing "github.com/keelson/keelson/ingress"
)

// echo is what a test backend answers: who it is and what it was sent.
type echo struct {
	Backend        string
	Host           string
	Path           string
	Query          string
	Body           string
	XForwardedFor  string
	XForwardedHost string
	XForwardedProt string
}

// testBackend is an HTTP server on 127.0.0.1 that answers with an echo.
type testBackend struct {
	name string
	srv  *httptest.Server
	hits atomic.Int64
}

func (b *testBackend) addr() string { return b.srv.Listener.Addr().String() }

func newBackend(t testing.TB, name string) *testBackend {
	t.Helper()
	b := &testBackend{name: name}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echo{
			Backend: name, Host: r.Host, Path: r.URL.Path, Query: r.URL.RawQuery, Body: string(body),
			XForwardedFor: r.Header.Get("X-Forwarded-For"), XForwardedHost: r.Header.Get("X-Forwarded-Host"),
			XForwardedProt: r.Header.Get("X-Forwarded-Proto"),
		})
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// closedAddr is an address on 127.0.0.1 where nothing listens.
func closedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// world is the objects a test table is built from.
type world struct {
	ingresses []*networkingv1.Ingress
	// services maps a service name to its ready endpoints ("127.0.0.1:port");
	// every service has port 80 named "http".
	services map[string][]string
	secrets  []*corev1.Secret
}

func (w world) table(t testing.TB) *routing.Table {
	t.Helper()
	in := routing.Input{}
	for i, ing := range w.ingresses {
		in.Ingresses = append(in.Ingresses, routing.Ingress{CreateIndex: uint64(i + 1), Ingress: ing})
	}
	for name, eps := range w.services {
		in.Services = append(in.Services, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}},
		})
		for j, ep := range eps {
			host, port, _ := net.SplitHostPort(ep)
			n, _ := strconv.Atoi(port)
			in.EndpointSlices = append(in.EndpointSlices, &discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: fmt.Sprintf("%s-%d", name, j), Labels: map[string]string{discoveryv1.LabelServiceName: name}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Protocol: ptr(corev1.ProtocolTCP), Port: ptr(int32(n))}},
				Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{host}, Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}}},
			})
		}
	}
	in.Secrets = w.secrets
	tab, probs := routing.Build(in)
	for _, p := range probs {
		t.Logf("table problem: %v", p)
	}
	return tab
}

func ptr[T any](v T) *T { return &v }

// ingress builds an Ingress: rules are "host path-type path service" lines,
// e.g. "a.example.com Prefix /api api"; host "-" is none.
func ingress(name string, rules ...string) *networkingv1.Ingress {
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name}}
	for _, r := range rules {
		f := strings.Fields(r)
		host := f[0]
		if host == "-" {
			host = ""
		}
		typ := networkingv1.PathType(f[1])
		p := networkingv1.HTTPIngressPath{Path: f[2], PathType: &typ, Backend: networkingv1.IngressBackend{
			Service: &networkingv1.IngressServiceBackend{Name: f[3], Port: networkingv1.ServiceBackendPort{Name: "http"}},
		}}
		var rule *networkingv1.IngressRule
		for i := range ing.Spec.Rules {
			if ing.Spec.Rules[i].Host == host {
				rule = &ing.Spec.Rules[i]
			}
		}
		if rule == nil {
			ing.Spec.Rules = append(ing.Spec.Rules, networkingv1.IngressRule{Host: host, IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{}}})
			rule = &ing.Spec.Rules[len(ing.Spec.Rules)-1]
		}
		rule.HTTP.Paths = append(rule.HTTP.Paths, p)
	}
	return ing
}

func withTLS(ing *networkingv1.Ingress, secret string, hosts ...string) *networkingv1.Ingress {
	ing.Spec.TLS = append(ing.Spec.TLS, networkingv1.IngressTLS{SecretName: secret, Hosts: hosts})
	return ing
}

func withAnnotation(ing *networkingv1.Ingress, k, v string) *networkingv1.Ingress {
	if ing.Annotations == nil {
		ing.Annotations = map[string]string{}
	}
	ing.Annotations[k] = v
	return ing
}

func withDefaultBackend(ing *networkingv1.Ingress, svc string) *networkingv1.Ingress {
	ing.Spec.DefaultBackend = &networkingv1.IngressBackend{Service: &networkingv1.IngressServiceBackend{Name: svc, Port: networkingv1.ServiceBackendPort{Number: 80}}}
	return ing
}

// testProxy is a running Server on 127.0.0.1.
type testProxy struct {
	*Server
	httpAddr, httpsAddr string
	served              chan error
}

func startProxy(t testing.TB, cfg Config, tab *routing.Table) *testProxy {
	t.Helper()
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPSPort == 0 {
		cfg.HTTPSPort = httpsLn.Addr().(*net.TCPAddr).Port
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Update(tab)
	p := &testProxy{Server: s, httpAddr: httpLn.Addr().String(), httpsAddr: httpsLn.Addr().String(), served: make(chan error, 1)}
	go func() { p.served <- s.Serve(httpLn, httpsLn) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// stop closes the proxy and checks that Serve returned.
func (p *testProxy) stop(t testing.TB) {
	if err := p.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-p.served:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
		p.served <- err // for a second stop
	case <-time.After(10 * time.Second):
		t.Errorf("Serve did not return after Close")
	}
}

// client sends every request to the proxy whatever the URL's host, over
// HTTP/1.1 or (h2 true) HTTP/2 for https URLs, trusting the test CA.
func (p *testProxy) client(h2 bool) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if strings.HasSuffix(addr, ":443") {
				return d.DialContext(ctx, network, p.httpsAddr)
			}
			return d.DialContext(ctx, network, p.httpAddr)
		},
		TLSClientConfig:   &tls.Config{RootCAs: testCAPool()},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// get fetches a URL through the proxy and returns the status and body.
func get(t testing.TB, c *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// getEcho fetches a URL that a test backend answers.
func getEcho(t testing.TB, c *http.Client, url string) echo {
	t.Helper()
	code, body, _ := get(t, c, url)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	var e echo
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("GET %s: %v: %s", url, err, body)
	}
	return e
}

// The test CA signs every test certificate.
var testCA = func() struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
} {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keelson ingress test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return struct {
		cert *x509.Certificate
		key  *ecdsa.PrivateKey
	}{cert, key}
}()

func testCAPool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(testCA.cert)
	return p
}

var serial atomic.Int64

// certPEM makes a certificate for names signed by the test CA; its serial
// number is unique in the test run.
func certPEM(t testing.TB, names ...string) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(100 + serial.Add(1)), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
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
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// tlsSecret is a kubernetes.io/tls Secret with a new certificate for names.
func tlsSecret(t testing.TB, name string, names ...string) *corev1.Secret {
	c, k := certPEM(t, names...)
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: c, corev1.TLSPrivateKeyKey: k},
	}
}

// serialOf dials the proxy's TLS port with a server name and returns the
// serial number of the certificate it shows.
func (p *testProxy) serialOf(t testing.TB, serverName string) (string, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.httpsAddr, &tls.Config{ServerName: serverName, RootCAs: testCAPool()})
	if err != nil {
		return "", err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// decodeJSON reads a JSON answer and closes it.
func decodeJSON(t testing.TB, resp *http.Response, v any) {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", resp.Request.URL, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v: %s", resp.Request.URL, err, b)
	}
}

// serialOfSecret is the serial number of a test Secret's certificate.
func serialOfSecret(t testing.TB, s *corev1.Secret) string {
	t.Helper()
	c, err := tls.X509KeyPair(s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey])
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.String()
}

// serveRaw runs an endpoint that hands each connection to handle.
func serveRaw(t *testing.T, handle func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { defer c.Close(); handle(c) })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}
