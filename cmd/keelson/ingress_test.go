package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/ebpf"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/testimages"
	"github.com/keelson/keelson/nodeagent/network"
)

// testCA issues certificates for the test's hosts.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "keelson test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// tlsSecret is a kubernetes.io/tls Secret for host signed by the CA, with
// the given serial number.
func (ca *testCA) tlsSecret(t *testing.T, name, host string, serial int64) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: host}, DNSNames: []string{host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	crt := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	k := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	return fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: %s}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: %s\n  tls.key: %s\n",
		name, base64.StdEncoding.EncodeToString(crt), base64.StdEncoding.EncodeToString(k))
}

const ingressApp = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: %s
        imagePullPolicy: Never
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
          failureThreshold: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: shop}
spec:
  tls:
  - {hosts: [shop.example.com], secretName: shop-tls}
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
  - host: plain.example.com
    http:
      paths:
      - {path: /hostname, pathType: Exact, backend: {service: {name: web, port: {number: 80}}}}
`

// TestIngressEndToEnd serves an Ingress from Git through a real agent to a
// client in another network namespace: host and path routing, the redirect
// to HTTPS, TLS with HTTP/2 from a Secret, a certificate rotated by a
// commit while clients keep connecting (no failed handshake), and 503 at
// once when the backends stop being ready.
func TestIngressEndToEnd(t *testing.T) {
	gittest.RequireRoot(t, "runs containers and network namespaces")
	id := os.Getpid() % 10000
	out := newOutsideHost(t, fmt.Sprintf("king%d", id), 180+id%20, id%250)
	ca := newTestCA(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	repo := gittest.NewRepo(t, "", "ingress")
	files := map[string]string{"app.yaml": fmt.Sprintf(ingressApp, testimages.TestappRef), "tls.yaml": ca.tlsSecret(t, "shop-tls", "shop.example.com", 100)}
	repo.CommitFiles("ingress", files)

	ctlDir := t.TempDir()
	agentDir, err := os.MkdirTemp("", "king")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(agentDir) })
	testimages.Build(t, filepath.Join(agentDir, "images"))
	node := fmt.Sprintf("ing-%d", id)
	t.Cleanup(func() {
		_ = network.RemoveNode(network.Config{Node: node})
		_ = ebpf.Unpin(ebpf.Config{Node: node})
	})
	httpPort, httpsPort := freePort(t), freePort(t)
	ctlAddr, agentAddr := freeAddr(t), freeAddr(t)
	ctl := startProc(t, "controller", "--repo", repo.Dir, "--data-dir", ctlDir, "--listen", ctlAddr,
		"--cluster-cidr", fmt.Sprintf("10.%d.0.0/16", 100+(id+31)%50), "--service-cidr", fmt.Sprintf("10.%d.0.0/16", 150+(id+31)%50))
	c, _ := client.New("http://" + ctlAddr)
	waitAgentToken(t, ctlDir)
	agent := startProc(t, "agent", "--name", node, "--data-dir", agentDir, "--server", "http://"+ctlAddr,
		"--token-file", filepath.Join(ctlDir, "agent-token"), "--listen", agentAddr, "--external-interface", out.hostVeth,
		"--ingress-http-port", strconv.Itoa(httpPort), "--ingress-https-port", strconv.Itoa(httpsPort))
	t.Cleanup(func() {
		repo.Remove("app.yaml")
		repo.CommitFiles("remove", map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			if l, err := c.Pods(context.Background(), client.PodQuery{}); err == nil && len(l.Items) == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		waitAgentEmpty(t, agentAddr)
		agent.stop()
		_ = downNode(context.Background(), agentDir, node, io.Discard)
		ctl.stop()
	})

	resolve := func(host string, port int) string { return fmt.Sprintf("%s:%d:%s", host, port, out.hostIP) }
	plainURL := fmt.Sprintf("http://plain.example.com:%d/hostname", httpPort)
	shopHTTP := fmt.Sprintf("http://shop.example.com:%d/hostname", httpPort)
	shopHTTPS := fmt.Sprintf("https://shop.example.com:%d/hostname", httpsPort)
	var pods []string
	eventually(t, "a plain HTTP route from outside", func() string {
		l, _ := c.Pods(context.Background(), client.PodQuery{Selector: "app=web"})
		pods = nil
		for _, p := range l.Items {
			pods = append(pods, p.Name)
		}
		body, err := out.curl("--resolve", resolve("plain.example.com", httpPort), plainURL)
		if err != nil {
			return err.Error()
		}
		for _, p := range pods {
			if strings.TrimSpace(body) == p {
				return ""
			}
		}
		return "answer " + body
	})
	// describe shows each rule's backend with its ready endpoints; get
	// shows where the Ingress is served.
	eventually(t, "describe ingress", func() string {
		code, desc, errOut := cli(t, "describe", "ingress", "shop", "--server", "http://"+ctlAddr)
		if code != 0 || !strings.Contains(desc, "shop.example.com") || strings.Count(desc, ":8080") < 2 || !strings.Contains(desc, "web:http (") {
			return fmt.Sprintf("%d\n%s%s", code, desc, errOut)
		}
		code, list, _ := cli(t, "get", "ingress", "--server", "http://"+ctlAddr)
		if code != 0 || !strings.Contains(list, "80, 443") || strings.Count(strings.Split(strings.TrimSpace(list), "\n")[1], ".") < 3 {
			return "get ingress:\n" + list
		}
		return ""
	})
	// The proxy binds no address: the node's addresses are steered to it by
	// sk_lookup, so loopback, which is not steered, has nothing on the port.
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)), time.Second); err == nil {
		conn.Close()
		t.Errorf("127.0.0.1:%d accepted a connection: the proxy should be steered to, not bound on every address", httpPort)
	}
	// Exact path: /hostname/x is not routed.
	if got, _ := out.curl("-o", "/dev/null", "-w", "%{http_code}", "--resolve", resolve("plain.example.com", httpPort), plainURL+"/x"); got != "404" {
		t.Errorf("a path outside the Exact rule: %s, want 404", got)
	}
	// A TLS host redirects plain HTTP to HTTPS.
	got, err := out.curl("-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "--resolve", resolve("shop.example.com", httpPort), shopHTTP)
	if err != nil || !strings.HasPrefix(got, "308 https://shop.example.com") {
		t.Errorf("plain HTTP to a TLS host: %q %v, want a 308 to https", got, err)
	}
	// HTTPS with HTTP/2, the certificate checked against the test's CA.
	got, err = out.curl("--http2", "--cacert", caFile, "-w", " %{http_version}", "--resolve", resolve("shop.example.com", httpsPort), shopHTTPS)
	if err != nil || !strings.HasSuffix(got, " 2") {
		t.Errorf("HTTPS: %q %v, want an answer over HTTP/2", got, err)
	}

	// Rotate the certificate through Git while clients keep connecting.
	serialOf := func() (int64, error) {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", net.JoinHostPort(out.hostIP, strconv.Itoa(httpsPort)),
			&tls.Config{ServerName: "shop.example.com", RootCAs: pool(ca)})
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64(), nil
	}
	var (
		failures atomic.Int32
		newSeen  atomic.Bool
		stop     = make(chan struct{})
		wg       sync.WaitGroup
	)
	var lastErr atomic.Value
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				s, err := serialOf()
				if err != nil {
					failures.Add(1)
					lastErr.Store(err.Error())
				} else if s == 101 {
					newSeen.Store(true)
				}
			}
		})
	}
	files["tls.yaml"] = ca.tlsSecret(t, "shop-tls", "shop.example.com", 101)
	repo.CommitFiles("rotate the certificate", files)
	eventually(t, "the new certificate served", func() string {
		if !newSeen.Load() {
			return "still the old serial"
		}
		return ""
	})
	close(stop)
	wg.Wait()
	if n := failures.Load(); n > 0 {
		t.Errorf("%d TLS handshakes failed while the certificate rotated: %v", n, lastErr.Load())
	}

	// Backends that stop being ready: 503 at once, not a hang.
	l, _ := c.Pods(context.Background(), client.PodQuery{Selector: "app=web"})
	for _, p := range l.Items {
		if _, err := http.Get("http://" + net.JoinHostPort(p.Status.PodIP, "8080") + "/fail-health"); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "503 when no backend is ready", func() string {
		start := time.Now()
		got, _ := out.curl("-o", "/dev/null", "-w", "%{http_code}", "--resolve", resolve("plain.example.com", httpPort), plainURL)
		if got != "503" {
			return "status " + got
		}
		if d := time.Since(start); d > time.Second {
			return fmt.Sprintf("503 took %s", d)
		}
		return ""
	})
}

func pool(ca *testCA) *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

// freePort is a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
