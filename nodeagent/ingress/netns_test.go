package ingress

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/keelson/keelson/internal/gittest"
)

// outside is a network namespace joined to this one by a veth pair: a
// client there is a client from outside the node.
type outside struct {
	name           string // of the namespace
	hostIP, peerIP string // the two ends of the /30
}

// newOutside makes the namespace and the veth pair, with a /30 of
// 10.213.0.0/16 that no interface here has; t.Cleanup removes them.
func newOutside(t *testing.T) *outside {
	t.Helper()
	gittest.RequireRoot(t, "makes a network namespace and a veth pair")
	gittest.RequireBinary(t, "ip")
	var b [4]byte
	rand.Read(b[:])
	id := hex.EncodeToString(b[:])
	o := &outside{name: "kingress-" + id}
	hostIf, peerIf := "kih"+id, "kin"+id // at most 15 characters
	addrs, err := exec.Command("ip", "-o", "-4", "addr").Output()
	if err != nil {
		t.Fatal(err)
	}
	for {
		x, _ := rand.Int(rand.Reader, big.NewInt(256))
		y, _ := rand.Int(rand.Reader, big.NewInt(64))
		base := fmt.Sprintf("10.213.%d.", x.Int64())
		o.hostIP, o.peerIP = base+fmt.Sprint(y.Int64()*4+1), base+fmt.Sprint(y.Int64()*4+2)
		if !strings.Contains(string(addrs), " "+o.hostIP+"/") && !strings.Contains(string(addrs), " "+o.peerIP+"/") {
			break
		}
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	run("netns", "add", o.name)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", o.name).Run() })
	run("link", "add", hostIf, "type", "veth", "peer", "name", peerIf)
	t.Cleanup(func() { exec.Command("ip", "link", "del", hostIf).Run() }) // takes the peer with it
	run("link", "set", peerIf, "netns", o.name)
	run("addr", "add", o.hostIP+"/30", "dev", hostIf)
	run("link", "set", hostIf, "up")
	run("-n", o.name, "addr", "add", o.peerIP+"/30", "dev", peerIf)
	run("-n", o.name, "link", "set", peerIf, "up")
	run("-n", o.name, "link", "set", "lo", "up")
	return o
}

// dial connects from inside the namespace: the socket is made by a thread
// that entered it (and that ends with the goroutine, never to be reused).
func (o *outside) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread goes when the goroutine ends
		ns, err := netns.GetFromName(o.name)
		if err != nil {
			ch <- result{err: err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			ch <- result{err: err}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

// TestOutsideClient serves on the host end of a veth pair and is reached
// from the network namespace at its other end, by curl (HTTP/1.1 and
// HTTP/2 over TLS) and by a Go client, as a client outside the node would.
func TestOutsideClient(t *testing.T) {
	o := newOutside(t)
	gittest.RequireBinary(t, "curl")
	b := newBackend(t, "b")
	sec := tlsSecret(t, "cert", "shop.example.com")
	w := world{
		ingresses: []*networkingv1.Ingress{withTLS(ingress("shop", "shop.example.com Prefix / b"), "cert", "shop.example.com")},
		services:  map[string][]string{"b": {b.addr()}},
		secrets:   []*corev1.Secret{sec},
	}
	httpLn, err := net.Listen("tcp", o.hostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", o.hostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{HTTPSPort: httpsLn.Addr().(*net.TCPAddr).Port})
	if err != nil {
		t.Fatal(err)
	}
	s.Update(w.table(t))
	p := &testProxy{Server: s, httpAddr: httpLn.Addr().String(), httpsAddr: httpsLn.Addr().String(), served: make(chan error, 1)}
	go func() { p.served <- s.Serve(httpLn, httpsLn) }()
	t.Cleanup(func() { p.stop(t) })
	_, httpsPort, _ := net.SplitHostPort(p.httpsAddr)

	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: testCA.cert.Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	curl := func(args ...string) (string, string) {
		t.Helper()
		args = append([]string{"netns", "exec", o.name, "curl", "-sS", "--max-time", "10", "-w", "\n%{http_code} %{http_version}"}, args...)
		out, err := exec.Command("ip", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("curl %s: %v: %s", strings.Join(args, " "), err, out)
		}
		s := strings.TrimSpace(string(out))
		i := strings.LastIndexByte(s, '\n')
		return s[:max(i, 0)], s[i+1:]
	}
	wantEcho := func(what, body, host, proto string) {
		t.Helper()
		var e echo
		if err := json.Unmarshal([]byte(body), &e); err != nil {
			t.Fatalf("%s: %v: %s", what, err, body)
		}
		want := echo{Backend: "b", Host: host, Path: "/cart", XForwardedFor: o.peerIP, XForwardedHost: host, XForwardedProt: proto}
		if e != want {
			t.Errorf("%s: echo %+v, want %+v", what, e, want)
		}
	}

	t.Run("curl redirect", func(t *testing.T) {
		_, status := curl("-o", "/dev/null", "-H", "Host: shop.example.com", "http://"+p.httpAddr+"/cart")
		if status != "308 1.1" {
			t.Errorf("status %q, want a 308 over HTTP/1.1", status)
		}
	})
	for _, v := range []struct{ flag, want string }{{"--http1.1", "200 1.1"}, {"--http2", "200 2"}} {
		t.Run("curl https "+v.flag, func(t *testing.T) {
			body, status := curl(v.flag, "--cacert", caFile, "--resolve", "shop.example.com:"+httpsPort+":"+o.hostIP, "https://shop.example.com:"+httpsPort+"/cart")
			if status != v.want {
				t.Errorf("status %q, want %q", status, v.want)
			}
			wantEcho("curl "+v.flag, body, "shop.example.com:"+httpsPort, "https")
		})
	}
	t.Run("go client", func(t *testing.T) {
		c := &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
					if strings.HasSuffix(addr, ":443") {
						return o.dial(ctx, network, p.httpsAddr)
					}
					return o.dial(ctx, network, p.httpAddr)
				},
				TLSClientConfig:   &tls.Config{RootCAs: testCAPool()},
				ForceAttemptHTTP2: true,
			},
		}
		defer c.CloseIdleConnections()
		resp, err := c.Get("https://shop.example.com/cart")
		if err != nil {
			t.Fatal(err)
		}
		if resp.Proto != "HTTP/2.0" {
			t.Errorf("proto %s", resp.Proto)
		}
		var e echo
		decodeJSON(t, resp, &e)
		b, _ := json.Marshal(e)
		wantEcho("go client", string(b), "shop.example.com", "https")
		// Plain HTTP with the redirect opted out.
		w.ingresses[0] = withAnnotation(w.ingresses[0], "keelson.dev/ssl-redirect", "false")
		s.Update(w.table(t))
		resp, err = c.Get("http://shop.example.com/cart")
		if err != nil {
			t.Fatal(err)
		}
		decodeJSON(t, resp, &e)
		b, _ = json.Marshal(e)
		wantEcho("go client over HTTP", string(b), "shop.example.com", "http")
	})
}
