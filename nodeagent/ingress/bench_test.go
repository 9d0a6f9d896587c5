package ingress

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	routing "github.com/keelson/keelson/ingress"
)

// benchBackendEnv makes the test binary a pair of benchmark backends (see
// TestMain): they run in a process of their own, so that neither proxy
// shares a Go runtime with them.
const benchBackendEnv = "KEELSON_INGRESS_BENCH_BACKEND"

func TestMain(m *testing.M) {
	if os.Getenv(benchBackendEnv) == "1" {
		runBenchBackends()
		return
	}
	os.Exit(m.Run())
}

// benchBody is what the backends answer: a small body.
var benchBody = []byte(strings.Repeat("keelson ingress benchmark body.\n", 2))

// runBenchBackends serves two HTTP backends on 127.0.0.1, prints their
// addresses on one line and serves until its standard input closes.
func runBenchBackends() {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", strconv.Itoa(len(benchBody)))
		w.Write(benchBody)
	})
	var addrs []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		addrs = append(addrs, ln.Addr().String())
		go http.Serve(ln, h)
	}
	fmt.Println(strings.Join(addrs, " "))
	io.Copy(io.Discard, os.Stdin)
}

// startBenchBackends starts the backend process and returns its addresses
// and process id.
func startBenchBackends(b *testing.B) ([]string, int) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), benchBackendEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		b.Fatalf("benchmark backends: %v", err)
	}
	return strings.Fields(line), cmd.Process.Pid
}

// freeAddr is an address on 127.0.0.1 that was free a moment ago.
func freeAddr(b *testing.B) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// nginxConf is a reverse proxy to the same backends, set up as ingress-nginx
// sets up its upstreams: HTTP/1.1 with keep-alive, X-Forwarded-* headers,
// HTTP/2 on TLS, no access log (Keelson's is off too).
const nginxConf = `worker_processes auto;
error_log stderr warn;
pid {{dir}}/nginx.pid;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path {{dir}}/body;
	proxy_temp_path {{dir}}/proxy;
	fastcgi_temp_path {{dir}}/fastcgi;
	uwsgi_temp_path {{dir}}/uwsgi;
	scgi_temp_path {{dir}}/scgi;
	upstream backends {
		{{servers}}
		keepalive 256;
	}
	server {
		listen {{http}};
		listen {{https}} ssl http2;
		server_name bench.example.com;
		ssl_certificate {{dir}}/tls.crt;
		ssl_certificate_key {{dir}}/tls.key;
		location / {
			proxy_pass http://backends;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_set_header Host $host;
			proxy_set_header X-Forwarded-For $remote_addr;
			proxy_set_header X-Forwarded-Host $host;
			proxy_set_header X-Forwarded-Proto $scheme;
		}
	}
}
`

// startNginx runs Debian's nginx with nginxConf and returns its HTTP and
// HTTPS addresses; it is stopped when the benchmark ends.
func startNginx(b *testing.B, backends []string, certPEM, keyPEM []byte) (httpAddr, httpsAddr string, master int) {
	b.Helper()
	dir := b.TempDir()
	httpAddr, httpsAddr = freeAddr(b), freeAddr(b)
	var servers strings.Builder
	for _, a := range backends {
		fmt.Fprintf(&servers, "server %s;\n\t\t", a)
	}
	conf := strings.NewReplacer("{{dir}}", dir, "{{servers}}", servers.String(), "{{http}}", httpAddr, "{{https}}", httpsAddr).Replace(nginxConf)
	for name, data := range map[string][]byte{"nginx.conf": []byte(conf), "tls.crt": certPEM, "tls.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	cmd := exec.Command("nginx", "-p", dir, "-e", "stderr", "-c", filepath.Join(dir, "nginx.conf"), "-g", "daemon off; master_process on;")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // nginx: SIGINT is a fast shutdown
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c1, err1 := net.Dial("tcp", httpAddr)
		c2, err2 := net.Dial("tcp", httpsAddr)
		if err1 == nil && err2 == nil {
			c1.Close()
			c2.Close()
			break
		}
		for _, c := range []net.Conn{c1, c2} {
			if c != nil {
				c.Close()
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("nginx did not start listening: %v %v", err1, err2)
		}
	}
	return httpAddr, httpsAddr, cmd.Process.Pid
}

// cpuTime is the CPU time (user and system) used so far by process pid
// (with its children that are still running, when children is true), read
// from /proc.
func cpuTime(pid int, children bool) time.Duration {
	var ticks int64
	seen := map[int]bool{}
	var add func(pid int)
	add = func(pid int) {
		if seen[pid] {
			return
		}
		seen[pid] = true
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return
		}
		// The fields after the command (which may hold spaces) in ")".
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		u, _ := strconv.ParseInt(f[11], 10, 64) // utime: field 14
		s, _ := strconv.ParseInt(f[12], 10, 64) // stime: field 15
		ticks += u + s
		if !children {
			return
		}
		if kids, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid)); err == nil {
			for _, k := range strings.Fields(string(kids)) {
				n, _ := strconv.Atoi(k)
				add(n)
			}
		}
	}
	add(pid)
	return time.Duration(ticks) * time.Second / 100 // USER_HZ is 100 on Linux
}

// wrkResult is what one wrk run measured.
type wrkResult struct {
	rps float64
	p99 time.Duration
	cpu time.Duration // of the proxy per request
}

var (
	wrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	wrkP99 = regexp.MustCompile(`\s99%\s+([0-9.]+)(us|ms|s)\b`)
)

// Load generator settings, the same for both proxies: one wrk thread (two
// cores are shared by wrk, the proxy and the backends), a fixed number of
// kept-alive connections and a fixed duration.
const (
	wrkConns    = 50
	wrkDuration = 5 * time.Second
	// vsRounds is how many runs of each proxy a comparison averages: this
	// machine's speed moves by ±10% from one run to the next. Even, so that
	// each proxy runs first in as many pairs as the other.
	vsRounds = 4
)

// runWrk loads url with wrk for d and parses its report.
func runWrk(b *testing.B, url string, d time.Duration) wrkResult {
	b.Helper()
	out, err := exec.Command("wrk", "-t1", "-c"+strconv.Itoa(wrkConns), "-d"+strconv.Itoa(int(d.Seconds()))+"s", "--latency",
		"-H", "Host: bench.example.com", url).CombinedOutput()
	if err != nil {
		b.Fatalf("wrk %s: %v: %s", url, err, out)
	}
	s := string(out)
	if strings.Contains(s, "Non-2xx or 3xx responses") {
		b.Fatalf("wrk %s: errors:\n%s", url, s)
	}
	m1, m2 := wrkRPS.FindStringSubmatch(s), wrkP99.FindStringSubmatch(s)
	if m1 == nil || m2 == nil {
		b.Fatalf("wrk %s: cannot read its report:\n%s", url, s)
	}
	var r wrkResult
	r.rps, _ = strconv.ParseFloat(m1[1], 64)
	v, _ := strconv.ParseFloat(m2[1], 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m2[2]]
	r.p99 = time.Duration(v * float64(unit))
	return r
}

// BenchmarkVsNginx compares Keelson's proxy with Debian's nginx in front of
// the same two backends (a process of their own), under the same wrk load,
// over plain HTTP and over TLS (HTTP/1.1, kept-alive connections). Each
// proxy is measured vsRounds times, in the order Keelson, nginx, nginx,
// Keelson, Keelson, nginx, nginx, Keelson (so that neither gains from going
// first or from a slow spell of the machine), and the runs are averaged.
// Targets: requests/s ≥ 0.8× nginx's and p99
// latency ≤ 1.2× nginx's. The CPU time per request of each proxy is
// reported beside, and that of the backends (plain Go net/http servers
// answering the same requests): the floor of a proxy built on net/http.
func BenchmarkVsNginx(b *testing.B) {
	for _, bin := range []string{"wrk", "nginx"} {
		if _, err := exec.LookPath(bin); err != nil {
			b.Skipf("%s not installed (hack/install-deps.sh installs it): %v", bin, err)
		}
	}
	backends, backendsPID := startBenchBackends(b)
	certPEM, keyPEM := certPEM(b, "bench.example.com")

	// Keelson: one Ingress with a TLS entry for its host and one without
	// hosts (the default certificate: wrk sends no server name, it connects
	// to an address), no redirect, as nginx is set up.
	ing := withAnnotation(withTLS(withTLS(ingress("bench", "bench.example.com Prefix / backend"), "cert", "bench.example.com"), "cert"),
		routing.AnnotationSSLRedirect, "false")
	w := world{
		ingresses: []*networkingv1.Ingress{ing},
		services:  map[string][]string{"backend": backends},
		secrets: []*corev1.Secret{{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "cert"}, Type: corev1.SecretTypeTLS,
			Data: map[string][]byte{corev1.TLSCertKey: certPEM, corev1.TLSPrivateKeyKey: keyPEM},
		}},
	}
	tab := w.table(b)
	if _, ok := tab.Certificate(""); !ok {
		b.Fatal("no default certificate in the table")
	}
	httpLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	httpsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	s.Update(tab)
	served := make(chan error, 1)
	go func() { served <- s.Serve(httpLn, httpsLn) }()
	b.Cleanup(func() { s.Close(); <-served })

	nginxHTTP, nginxHTTPS, nginxPID := startNginx(b, backends, certPEM, keyPEM)
	keelsonHTTP, keelsonHTTPS := httpLn.Addr().String(), httpsLn.Addr().String()

	// Both answer the same, over HTTP/1.1 and HTTP/2.
	for _, u := range []string{"http://" + keelsonHTTP, "https://" + keelsonHTTPS, "http://" + nginxHTTP, "https://" + nginxHTTPS} {
		for _, h2 := range []bool{false, true} {
			checkBenchURL(b, u, h2 && strings.HasPrefix(u, "https"))
		}
	}

	for _, proto := range []struct{ name, keelson, nginx string }{
		{"http", "http://" + keelsonHTTP + "/", "http://" + nginxHTTP + "/"},
		{"https", "https://" + keelsonHTTPS + "/", "https://" + nginxHTTPS + "/"},
	} {
		b.Run(proto.name, func(b *testing.B) {
			for range b.N {
				runWrk(b, proto.keelson, time.Second) // warm-up: connections, pools, TLS sessions
				runWrk(b, proto.nginx, time.Second)
				var k, n wrkResult
				var backendCPU time.Duration // per request, over all runs
				type run struct {
					url string
					cpu func() time.Duration
					sum *wrkResult
				}
				keelson := run{proto.keelson, func() time.Duration { return cpuTime(os.Getpid(), false) }, &k}
				nginx := run{proto.nginx, func() time.Duration { return cpuTime(nginxPID, true) }, &n}
				var runs []run
				for i := range vsRounds {
					if i%2 == 0 {
						runs = append(runs, keelson, nginx)
					} else {
						runs = append(runs, nginx, keelson)
					}
				}
				for _, run := range runs {
					cpu0, bcpu0 := run.cpu(), cpuTime(backendsPID, false)
					r := runWrk(b, run.url, wrkDuration)
					cpu, bcpu := run.cpu()-cpu0, cpuTime(backendsPID, false)-bcpu0
					reqs := time.Duration(r.rps * wrkDuration.Seconds())
					run.sum.rps += r.rps / vsRounds
					run.sum.p99 += r.p99 / vsRounds
					run.sum.cpu += cpu / reqs / vsRounds
					backendCPU += bcpu / reqs / (2 * vsRounds)
				}
				b.ReportMetric(k.rps, "keelson-rps")
				b.ReportMetric(n.rps, "nginx-rps")
				b.ReportMetric(k.rps/n.rps, "rps-ratio")
				b.ReportMetric(float64(k.p99.Microseconds())/1000, "keelson-p99-ms")
				b.ReportMetric(float64(n.p99.Microseconds())/1000, "nginx-p99-ms")
				b.ReportMetric(float64(k.p99)/float64(n.p99), "p99-ratio")
				b.ReportMetric(float64(k.cpu.Nanoseconds())/1000, "keelson-cpu-us/req")
				b.ReportMetric(float64(n.cpu.Nanoseconds())/1000, "nginx-cpu-us/req")
				b.ReportMetric(float64(backendCPU.Nanoseconds())/1000, "backends-cpu-us/req")
				b.ReportMetric(0, "ns/op")
			}
		})
	}
}

// checkBenchURL makes sure a proxy answers the benchmark body.
func checkBenchURL(b *testing.B, url string, h2 bool) {
	b.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, ForceAttemptHTTP2: h2}
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", url+"/", nil)
	req.Host = "bench.example.com"
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		b.Fatalf("%s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(body) != string(benchBody) || (h2 && resp.ProtoMajor != 2) {
		b.Fatalf("%s (h2 %v): %s %s %q", url, h2, resp.Status, resp.Proto, body)
	}
}
