package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/ebpf"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/testimages"
	"github.com/keelson/keelson/nodeagent/network"
)

// servicesRepo is a Deployment of three testapp pods (HTTP on 8080, UDP on
// 9000, ready while /healthz answers) behind a ClusterIP service, a
// NodePort service, a UDP service and a headless one, and a busybox pod to
// ask from.
func servicesRepo(nodePort int) map[string]string {
	return map[string]string{
		"web.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: web
        image: %[1]s
        imagePullPolicy: Never
        args: ["--udp=:9000"]
        ports:
        - {name: http, containerPort: 8080}
        - {name: echo, containerPort: 9000, protocol: UDP}
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
  ports:
  - {name: http, port: 80, targetPort: http}
  - {name: echo, port: 53, targetPort: echo, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata: {name: web-np}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - {port: 80, targetPort: 8080, nodePort: %[2]d}
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {name: http, port: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: nobody}
spec:
  selector: {app: nobody}
  ports:
  - {port: 80}
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - {name: c, image: '%[1]s', imagePullPolicy: Never, args: ["--listen=:8081"]}
`, testimages.TestappRef, nodePort),
	}
}

// hostnameVia asks GET http://addr/hostname on a new connection.
func hostnameVia(addr string) (string, error) {
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/hostname")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// TestServicesEndToEnd runs a controller and an agent with the eBPF load
// balancer and cluster DNS, and checks Services as users see them: a
// ClusterIP spreads connections from the node and from a pod over every
// ready backend; a pod that stops being ready stops getting connections
// and comes back; a service without backends refuses at once; UDP replies
// come from the service address; DNS names resolve inside pods; NodePort
// answers a client in another network namespace; killing the agent leaves
// traffic flowing, and a service removed meanwhile is gone from the maps
// once it returns.
func TestServicesEndToEnd(t *testing.T) {
	gittest.RequireRoot(t, "runs containers and loads BPF programs")
	id := os.Getpid() % 10000
	nodePort := 30000 + id%2000
	repo := gittest.NewRepo(t, "", "services")
	files := servicesRepo(nodePort)
	repo.CommitFiles("services", files)

	// The outside client: a network namespace behind a veth pair whose host
	// side is the agent's external interface.
	outside := fmt.Sprintf("ksvc%d", id)
	hostVeth := fmt.Sprintf("ksv%d", id)
	subnet := fmt.Sprintf("10.%d.%d", 200+id%50, id%250)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	run("ip", "netns", "add", outside)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", outside).Run() })
	run("ip", "link", "add", hostVeth, "type", "veth", "peer", "name", "eth0", "netns", outside)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", hostVeth).Run() })
	run("ip", "addr", "add", subnet+".1/30", "dev", hostVeth)
	run("ip", "link", "set", hostVeth, "up")
	run("ip", "-n", outside, "addr", "add", subnet+".2/30", "dev", "eth0")
	run("ip", "-n", outside, "link", "set", "eth0", "up")
	run("ip", "-n", outside, "route", "add", "default", "via", subnet+".1")

	ctlDir := t.TempDir()
	agentDir, err := os.MkdirTemp("", "ksvc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(agentDir) })
	testimages.Build(t, filepath.Join(agentDir, "images"))
	node := fmt.Sprintf("svc-%d", id)
	t.Cleanup(func() { _ = network.RemoveNode(network.Config{Node: node}) })
	ctlAddr, agentAddr := freeAddr(t), freeAddr(t)
	svcCIDR := fmt.Sprintf("10.%d.0.0/16", 150+id%50)
	ctl := startProc(t, "controller", "--repo", repo.Dir, "--data-dir", ctlDir, "--listen", ctlAddr,
		"--cluster-cidr", fmt.Sprintf("10.%d.0.0/16", 100+id%50), "--service-cidr", svcCIDR)
	c, _ := client.New("http://" + ctlAddr)
	waitAgentToken(t, ctlDir)
	agentArgs := []string{"agent", "--name", node, "--data-dir", agentDir, "--server", "http://" + ctlAddr,
		"--token-file", filepath.Join(ctlDir, "agent-token"), "--listen", agentAddr, "--external-interface", hostVeth}
	agent := startProc(t, agentArgs...)
	t.Cleanup(func() {
		repo.Remove("web.yaml")
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
		_ = ebpf.Unpin(ebpf.Config{Node: node})
	})

	// Wait for three ready backends.
	var clusterIP string
	eventually(t, "three ready endpoints", func() string {
		l, err := c.Services(context.Background(), client.Query{})
		if err != nil {
			return err.Error()
		}
		for _, it := range l.Items {
			if it.Service.Name != "web" {
				continue
			}
			clusterIP = it.Service.Spec.ClusterIP
			n := 0
			for _, s := range it.Slices {
				for _, e := range s.Endpoints {
					if e.Conditions.Ready != nil && *e.Conditions.Ready {
						n++
					}
				}
			}
			if n == 3 {
				return ""
			}
			return fmt.Sprintf("%d ready", n)
		}
		return "no service web"
	})
	pods, err := c.Pods(context.Background(), client.PodQuery{Selector: "app=web"})
	if err != nil || len(pods.Items) != 3 {
		t.Fatalf("pods: %v %d", err, len(pods.Items))
	}
	names := map[string]string{} // pod name -> IP
	for _, p := range pods.Items {
		names[p.Name] = p.Status.PodIP
	}

	// From the node: every backend, evenly enough, over many connections.
	svcAddr := net.JoinHostPort(clusterIP, "80")
	var seen map[string]int
	eventually(t, "ClusterIP reaches the backends", func() string {
		seen = map[string]int{}
		for range 600 {
			h, err := hostnameVia(svcAddr)
			if err != nil {
				return err.Error()
			}
			seen[h]++
		}
		if len(seen) != 3 {
			return fmt.Sprintf("backends seen: %v", seen)
		}
		return ""
	})
	for h, n := range seen {
		if _, ok := names[h]; !ok || n < 100 {
			t.Errorf("backend %s got %d of 600 connections (%v)", h, n, seen)
		}
	}

	// A pod that stops being ready leaves the backends, and comes back.
	var victim string
	for n := range names {
		victim = n
		break
	}
	if _, err := http.Get("http://" + net.JoinHostPort(names[victim], "8080") + "/fail-health"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "an unready pod gets no connections", func() string {
		for range 60 {
			h, err := hostnameVia(svcAddr)
			if err != nil {
				return err.Error()
			}
			if h == victim {
				return "still reached " + victim
			}
		}
		return ""
	})
	if _, err := http.Get("http://" + net.JoinHostPort(names[victim], "8080") + "/heal"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a pod ready again gets connections", func() string {
		for range 100 {
			if h, _ := hostnameVia(svcAddr); h == victim {
				return ""
			}
		}
		return victim + " not reached"
	})

	// A service with no backend refuses at once.
	l, _ := c.Services(context.Background(), client.Query{})
	var nobodyIP string
	for _, it := range l.Items {
		if it.Service.Name == "nobody" {
			nobodyIP = it.Service.Spec.ClusterIP
		}
	}
	start := time.Now()
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(nobodyIP, "80"), 3*time.Second); err == nil {
		conn.Close()
		t.Errorf("a service without backends accepted a connection")
	} else if time.Since(start) > time.Second {
		t.Errorf("a service without backends took %s to refuse: %v", time.Since(start), err)
	}

	// UDP: the reply comes from the service address.
	uc, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer uc.Close()
	dst := &net.UDPAddr{IP: net.ParseIP(clusterIP), Port: 53}
	if _, err := uc.WriteTo([]byte("ping"), dst); err != nil {
		t.Fatal(err)
	}
	_ = uc.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 512)
	n, from, err := uc.ReadFrom(buf)
	if err != nil {
		t.Fatalf("UDP service: %v", err)
	}
	if from.(*net.UDPAddr).IP.String() != clusterIP || !strings.HasSuffix(string(buf[:n]), " ping") {
		t.Errorf("UDP reply %q from %s, want it from %s", buf[:n], from, clusterIP)
	}

	// From a pod: the ClusterIP, and DNS names through the node's DNS
	// server, with the pod's search path.
	exec := func(args ...string) (int, string, string) {
		return cli(t, append([]string{"exec", "client", "--server", "http://" + ctlAddr, "--", "/testapp"}, args...)...)
	}
	eventually(t, "services by address and by name from a pod", func() string {
		for _, u := range []string{"http://" + svcAddr + "/hostname", "http://web/hostname", "http://web.default.svc.cluster.local/hostname"} {
			code, out, errOut := exec("get", u)
			if code != 0 || names[strings.TrimSpace(out)] == "" {
				return fmt.Sprintf("get %s: %d %q %s", u, code, out, errOut)
			}
		}
		code, out, errOut := exec("lookup", "web-headless")
		var want []string
		for _, ip := range names {
			want = append(want, ip)
		}
		sort.Strings(want)
		if code != 0 || strings.Fields(out) == nil || strings.Join(strings.Fields(out), ",") != strings.Join(want, ",") {
			return fmt.Sprintf("lookup web-headless: %d %q %s (want %v)", code, out, errOut, want)
		}
		return ""
	})

	// NodePort from outside.
	outsideGet := func() (string, error) {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		orig, err := netns.Get()
		if err != nil {
			return "", err
		}
		defer orig.Close()
		ns, err := netns.GetFromName(outside)
		if err != nil {
			return "", err
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			return "", err
		}
		defer netns.Set(orig) //nolint:errcheck
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("%s.1:%d", subnet, nodePort), 2*time.Second)
		if err != nil {
			return "", err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(conn, "GET /hostname HTTP/1.0\r\n\r\n")
		b, err := io.ReadAll(conn)
		return string(b), err
	}
	eventually(t, "NodePort from another network namespace", func() string {
		out, err := outsideGet()
		if err != nil {
			return err.Error()
		}
		for name := range names {
			if strings.Contains(out, name) {
				return ""
			}
		}
		return "answer " + out
	})

	// Kill the agent: traffic keeps flowing. Remove a service meanwhile: once
	// the agent is back, it is gone from the maps.
	agent.kill9()
	for range 50 {
		if _, err := hostnameVia(svcAddr); err != nil {
			t.Fatalf("ClusterIP while the agent is down: %v", err)
		}
	}
	delete(files, "web.yaml")
	files["web.yaml"] = strings.Replace(servicesRepo(nodePort)["web.yaml"], "metadata: {name: nobody}", "metadata: {name: nobody2}", 1)
	repo.CommitFiles("rename nobody", files)
	agent = startProc(t, agentArgs...)
	eventually(t, "stale frontend removed after the agent restarts", func() string {
		lb, err := ebpf.Open(ebpf.Config{Node: node})
		if err != nil {
			return err.Error()
		}
		defer lb.Close()
		svcs, err := lb.Services()
		if err != nil {
			return err.Error()
		}
		for _, s := range svcs {
			if s.Addr.String() == nobodyIP {
				return "the removed service's frontend is still there"
			}
		}
		return ""
	})
	if _, err := hostnameVia(svcAddr); err != nil {
		t.Errorf("ClusterIP after the agent restarted: %v", err)
	}
}
