package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/ebpf"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/testimages"
	"github.com/keelson/keelson/nodeagent/network"
)

// proc is a keelson daemon run as its own process (the test binary
// re-executed), so that it can be killed with SIGKILL.
type proc struct {
	cmd *exec.Cmd
	log string
}

func startProc(t *testing.T, args ...string) *proc {
	t.Helper()
	logf, err := os.CreateTemp(t.TempDir(), "keelson-*.log")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "KEELSON_TEST_MAIN=1")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, log: logf.Name()}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s log:\n%s", args[0], b)
		}
	})
	return p
}

func (p *proc) kill9() { _ = p.cmd.Process.Signal(syscall.SIGKILL); _ = p.cmd.Wait() }

func (p *proc) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		p.kill9()
	}
}

// podSet is "name uid restarts" of every Running pod, sorted.
func podSet(t *testing.T, c *client.Client) []string {
	list, err := c.Pods(context.Background(), client.PodQuery{})
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range list.Items {
		if p.Status.Phase != "Running" {
			continue
		}
		restarts := int32(0)
		for _, cs := range p.Status.ContainerStatuses {
			restarts += cs.RestartCount
		}
		out = append(out, fmt.Sprintf("%s %s %d", p.Name, p.UID, restarts))
	}
	sort.Strings(out)
	return out
}

// TestControllerKill9AdoptsRunningPods: a Deployment runs through a
// controller and an agent, each its own process. Killing the controller
// with SIGKILL and starting it again restarts no pod and replaces none: it
// rebuilds its store from Git and the agent's reports.
func TestControllerKill9AdoptsRunningPods(t *testing.T) {
	gittest.RequireRoot(t, "runs containers")
	repo := gittest.NewRepo(t, "", "deploy")
	repo.CommitFiles("web", sleeperDeployment(2))
	pc := startProcCluster(t, repo, fmt.Sprintf("kill9-%d", os.Getpid()%10000),
		append(cidrs(3), "--log-level", "debug"), []string{"--ingress-http-port", "0", "--log-level", "debug"})
	c, ctlAddr, agentAddr, node := pc.c, pc.ctlAddr, pc.agentAddr, pc.node
	var before []string
	eventually(t, "2 pods running", func() string {
		before = podSet(t, c)
		if len(before) != 2 {
			return fmt.Sprintf("running: %v", before)
		}
		return ""
	})
	podsSettle(t, c)

	// top, through the controller, from the node's cgroups.
	if code, out, errOut := cli(t, "top", "pods", "--server", "http://"+ctlAddr); code != 0 || strings.Count(out, "web-") != 2 || !strings.Contains(out, "Mi") {
		t.Errorf("top pods: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cli(t, "top", "nodes", "--server", "http://"+ctlAddr); code != 0 || !strings.Contains(out, node) {
		t.Errorf("top nodes: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cli(t, "describe", "node", node, "--server", "http://"+ctlAddr); code != 0 || !strings.Contains(out, "Pods (2):") ||
		!strings.Contains(out, "Registered") || !strings.Contains(out, "Ready") || !strings.Contains(out, "default/web-") {
		t.Errorf("describe node: %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := cli(t, "get", "node", node, "--server", "http://"+ctlAddr); code != 0 || !strings.Contains(out, node) {
		t.Errorf("get node %s: %d\n%s", node, code, out)
	}
	if code, _, errOut := cli(t, "get", "node", "no-such-node", "--server", "http://"+ctlAddr); code == 0 || !strings.Contains(errOut, "not found") {
		t.Errorf("get node no-such-node: %d %s", code, errOut)
	}
	// Logs through the controller; the node itself serves logs, exec and
	// usage to its controller only, not to whoever reaches its address.
	pod := strings.Fields(before[0])[0]
	if code, _, errOut := cli(t, "logs", pod, "--server", "http://"+ctlAddr); code != 0 {
		t.Errorf("logs %s through the controller: %d %s", pod, code, errOut)
	}
	for _, args := range [][]string{{"logs", pod}, {"exec", pod, "--server", "http://" + agentAddr, "--", "true"}, {"top", "pods"}} {
		if args[0] != "exec" {
			args = append(args, "--server", "http://"+agentAddr)
		}
		if code, _, errOut := cli(t, args...); code == 0 || !strings.Contains(errOut, "controller only") {
			t.Errorf("%v straight to the node's API: %d %q, want refused", args, code, errOut)
		}
	}

	start := time.Now()
	pc.restartController(t)
	eventually(t, "pods adopted by the new controller", func() string {
		if got := podSet(t, c); strings.Join(got, ",") != strings.Join(before, ",") {
			return fmt.Sprintf("pods %v, before %v", got, before)
		}
		return ""
	})
	adopted := time.Since(start)
	// Well past the start-up grace: nothing was replaced or restarted.
	time.Sleep(4 * time.Second)
	if got := podSet(t, c); strings.Join(got, ",") != strings.Join(before, ",") {
		t.Fatalf("after the grace: pods %v, before %v", got, before)
	}
	list, _ := c.Pods(context.Background(), client.PodQuery{})
	if len(list.Items) != 2 {
		t.Errorf("%d pods after a controller restart, want the same 2", len(list.Items))
	}
	t.Logf("controller restarted; pods adopted %s after its start", adopted.Round(time.Millisecond))
}

// TestNodeLossReplacesPods runs two agents (each its own process, private
// containerd, bridge and pod CIDR) with one controller. A Deployment spreads
// over both; killing one agent with SIGKILL makes its node NotReady and
// its pods are replaced on the other node.
func TestNodeLossReplacesPods(t *testing.T) {
	gittest.RequireRoot(t, "runs containers")
	repo := gittest.NewRepo(t, "", "deploy")
	repo.CommitFiles("none yet", sleeperDeployment(0))
	ctlDir := t.TempDir()
	ctlAddr := freeAddr(t)
	ctl := startProc(t, "controller", "--repo", repo.Dir, "--data-dir", ctlDir, "--listen", ctlAddr,
		"--cluster-cidr", fmt.Sprintf("10.%d.0.0/16", 100+(os.Getpid()+7)%100),
		"--node-lease-timeout", "3s", "--pod-eviction-timeout", "1s", "--log-level", "debug")
	c, _ := client.New("http://" + ctlAddr)
	waitAgentToken(t, ctlDir)
	type node struct {
		name, dir string
		args      []string
		p         *proc
	}
	var nodes []*node
	for i := range 2 {
		dir, err := os.MkdirTemp("", "kn")
		if err != nil {
			t.Fatal(err)
		}
		testimages.Build(t, filepath.Join(dir, "images"))
		n := &node{name: fmt.Sprintf("loss-%d-%d", os.Getpid()%10000, i), dir: dir}
		n.args = []string{"agent", "--name", n.name, "--data-dir", dir, "--server", "http://" + ctlAddr,
			"--token-file", filepath.Join(ctlDir, "agent-token"), "--listen", freeAddr(t), "--lease-interval", "500ms", "--log-level", "debug"}
		n.p = startProc(t, n.args...)
		nodes = append(nodes, n)
	}
	// Both nodes first, so that the pods spread over them.
	waitNodes(t, c, 2)
	repo.CommitFiles("web", sleeperDeployment(4))
	t.Cleanup(func() {
		repo.CommitFiles("none", sleeperDeployment(0))
		time.Sleep(3 * time.Second)
		for _, n := range nodes {
			n.p.stop()
			// A killed agent left its containers: a standalone agent with no
			// pods cleans them up.
			empty := t.TempDir()
			cleaner := exec.Command(os.Args[0], "agent", "--name", n.name, "--data-dir", n.dir, "--pod-manifests", empty,
				"--pod-cidr", "10.250.0.0/24", "--listen", "127.0.0.1:0")
			cleaner.Env = append(os.Environ(), "KEELSON_TEST_MAIN=1")
			if err := cleaner.Start(); err == nil {
				time.Sleep(6 * time.Second)
				_ = cleaner.Process.Signal(os.Interrupt)
				_ = cleaner.Wait()
			}
			_ = network.RemoveNode(network.Config{Node: n.name})
			_ = ebpf.Unpin(ebpf.Config{Node: n.name})
			_ = os.RemoveAll(n.dir)
		}
		ctl.stop()
	})
	onNode := func() map[string]int {
		out := map[string]int{}
		l, err := c.Pods(context.Background(), client.PodQuery{})
		if err != nil {
			return out
		}
		for _, p := range l.Items {
			if p.Status.Phase == "Running" {
				out[p.Spec.NodeName]++
			}
		}
		return out
	}
	eventually(t, "4 pods over both nodes", func() string {
		got := onNode()
		if got[nodes[0].name]+got[nodes[1].name] != 4 || got[nodes[0].name] == 0 || got[nodes[1].name] == 0 {
			return fmt.Sprintf("running per node: %v", got)
		}
		return ""
	})
	podsSettle(t, c)
	nodes[1].p.kill9()
	lost := time.Now()
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := onNode()
		if got[nodes[0].name] == 4 && got[nodes[1].name] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods of the lost node not replaced: running per node %v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("pods replaced on the remaining node %s after the other was lost", time.Since(lost).Round(100*time.Millisecond))
	l, _ := c.Nodes(context.Background(), client.Query{})
	for _, n := range l.Items {
		ready := false
		for _, cnd := range n.Status.Conditions {
			if cnd.Type == "Ready" && cnd.Status == "True" {
				ready = true
			}
		}
		if ready != (n.Name == nodes[0].name) {
			t.Errorf("node %s ready=%v", n.Name, ready)
		}
	}
}

// TestSimulatedNodes: `keelson agent --simulate N` registers N nodes whose
// pods a fake runtime reports running; the real controller, scheduler and
// API work over them.
func TestSimulatedNodes(t *testing.T) {
	repo := gittest.NewRepo(t, "", "sim")
	repo.CommitFiles("web", map[string]string{"web.yaml": `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 12
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: c, image: web:v1, resources: {requests: {cpu: "1", memory: 1Gi}}}
`})
	ctlDir := t.TempDir()
	ctlAddr := freeAddr(t)
	ctl := startProc(t, "controller", "--repo", repo.Dir, "--data-dir", ctlDir, "--listen", ctlAddr)
	t.Cleanup(ctl.stop)
	c, _ := client.New("http://" + ctlAddr)
	waitAgentToken(t, ctlDir)
	sim := startProc(t, "agent", "--name", "sim", "--simulate", "4", "--server", "http://"+ctlAddr,
		"--token-file", filepath.Join(ctlDir, "agent-token"), "--listen", "127.0.0.1:0")
	t.Cleanup(sim.stop)
	eventually(t, "12 pods running on 4 simulated nodes", func() string {
		l, err := c.Pods(context.Background(), client.PodQuery{})
		if err != nil {
			return err.Error()
		}
		per := map[string]int{}
		for _, p := range l.Items {
			if p.Status.Phase == "Running" {
				per[p.Spec.NodeName]++
			}
		}
		if len(per) != 4 || per["sim-00000"]+per["sim-00001"]+per["sim-00002"]+per["sim-00003"] != 12 {
			return fmt.Sprintf("running per node %v", per)
		}
		return ""
	})
	code, out, _ := cli(t, "get", "nodes", "--server", "http://"+ctlAddr)
	if code != 0 || strings.Count(out, "Ready") != 4 {
		t.Errorf("get nodes:\n%s", out)
	}

	// A pull request's diff says whether its pods fit the cluster: 4 nodes
	// of 32 CPUs, 12 pods of 1 CPU running. 100 replicas of 1 CPU fit once
	// the old 12 leave; a pod of 64 CPUs fits nowhere.
	repo.WriteFile("web.yaml", strings.Replace(strings.Replace(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 12
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: c, image: web:v2, resources: {requests: {cpu: "1", memory: 1Gi}}}
`, "replicas: 12", "replicas: 100", 1), "web:v1", "web:v2", 1))
	code, out, errOut := cli(t, "diff", "--schedule", "--server", "http://"+ctlAddr, repo.Dir)
	if code != 0 || !strings.Contains(out, "Deployment/default/web: 100 pod(s) fit (cpu 1000m, memory 1024Mi each)") || !strings.Contains(out, "4 node(s), 12 pod(s) running") {
		t.Errorf("diff --schedule of a change that fits: %d\n%s%s", code, out, errOut)
	}
	repo.WriteFile("big.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: big}\nspec:\n  containers:\n  - {name: c, image: x, resources: {requests: {cpu: \"64\"}}}\n")
	code, out, errOut = cli(t, "diff", "--schedule", "--server", "http://"+ctlAddr, repo.Dir)
	if code != 3 || !strings.Contains(out, "Pod/default/big: 1 of 1 pod(s) do not fit (cpu 64000m, memory 0Mi each): 0/4 nodes available: 4 insufficient cpu") {
		t.Errorf("diff --schedule of a pod that fits nowhere: %d\n%s%s", code, out, errOut)
	}
}

// TestAgentWithWrongTokenIsRefused: an agent with a wrong token does not
// join and says why; the controller keeps running.
func TestAgentWithWrongTokenIsRefused(t *testing.T) {
	repo := gittest.NewRepo(t, "", "tok")
	repo.CommitFiles("cm", map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
	ctlDir := t.TempDir()
	ctlAddr := freeAddr(t)
	ctl := startProc(t, "controller", "--repo", repo.Dir, "--data-dir", ctlDir, "--listen", ctlAddr)
	t.Cleanup(ctl.stop)
	waitAgentToken(t, ctlDir)
	bad := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(bad, []byte("not-the-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := cli(t, "agent", "--name", "intruder", "--simulate", "1", "--server", "http://"+ctlAddr, "--token-file", bad)
	if code == 0 || !strings.Contains(errOut, "agent token missing or wrong") {
		t.Errorf("agent with a wrong token: exit %d, stderr %q", code, errOut)
	}
	c, _ := client.New("http://" + ctlAddr)
	if l, err := c.Nodes(context.Background(), client.Query{}); err != nil || len(l.Items) != 0 {
		t.Errorf("nodes after a refused join: %v %v", l, err)
	}
}

// netHost is a machine of its own for a test: a network namespace joined
// to a test bridge on the host by a veth pair.
type netHost struct {
	ns, ip string
}

// newNetHosts makes n network namespaces on a bridge with addresses
// 10.NET.0.2... and the host at 10.NET.0.1, and removes them at the end.
func newNetHosts(t *testing.T, n int) (hostIP string, hosts []netHost) {
	t.Helper()
	id := os.Getpid() % 10000
	net := 150 + id%50
	br := fmt.Sprintf("kt%d", id)
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	hostIP = fmt.Sprintf("10.%d.0.1", net)
	run("ip", "link", "add", br, "type", "bridge")
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", br).Run() })
	run("ip", "addr", "add", hostIP+"/24", "dev", br)
	run("ip", "link", "set", br, "up")
	for i := range n {
		h := netHost{ns: fmt.Sprintf("kt%d-%d", id, i), ip: fmt.Sprintf("10.%d.0.%d", net, i+2)}
		veth := fmt.Sprintf("kt%dv%d", id, i)
		run("ip", "netns", "add", h.ns)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", h.ns).Run() })
		run("ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
		run("ip", "link", "set", veth, "master", br, "up")
		run("ip", "-n", h.ns, "addr", "add", h.ip+"/24", "dev", "eth0")
		run("ip", "-n", h.ns, "link", "set", "eth0", "up")
		run("ip", "-n", h.ns, "link", "set", "lo", "up")
		run("ip", "-n", h.ns, "route", "add", "default", "via", hostIP)
		hosts = append(hosts, h)
	}
	return hostIP, hosts
}

// TestAgentsInTheirOwnNetworkNamespaces runs two agents as two hosts (each
// in its own network namespace, with its own containerd and pod network)
// joined to a controller on the host. Cutting one host's link makes its
// node NotReady and its pods are replaced on the other.
func TestAgentsInTheirOwnNetworkNamespaces(t *testing.T) {
	gittest.RequireRoot(t, "makes network namespaces and runs containers")
	hostIP, hosts := newNetHosts(t, 2)
	repo := gittest.NewRepo(t, "", "netns")
	repo.CommitFiles("none yet", sleeperDeployment(0))
	ctlDir := t.TempDir()
	l, err := net.Listen("tcp", hostIP+":0")
	if err != nil {
		t.Fatal(err)
	}
	ctlAddr := l.Addr().String()
	l.Close()
	ctl := startProc(t, "controller", "--repo", repo.Dir, "--data-dir", ctlDir, "--listen", ctlAddr,
		"--cluster-cidr", fmt.Sprintf("10.%d.0.0/16", 100+(os.Getpid()+13)%100),
		"--node-lease-timeout", "3s", "--pod-eviction-timeout", "1s")
	c, _ := client.New("http://" + ctlAddr)
	waitAgentToken(t, ctlDir)
	type agentHost struct {
		h    netHost
		name string
		dir  string
		cmd  *exec.Cmd
	}
	var agents []*agentHost
	for i, h := range hosts {
		dir, err := os.MkdirTemp("", "kh")
		if err != nil {
			t.Fatal(err)
		}
		testimages.Build(t, filepath.Join(dir, "images"))
		a := &agentHost{h: h, name: fmt.Sprintf("nshost-%d-%d", os.Getpid()%10000, i), dir: dir}
		// nsenter switches the network namespace only: `ip netns exec` would
		// also remount /sys, hiding the cgroups runc needs.
		a.cmd = exec.Command("nsenter", "--net=/run/netns/"+h.ns, os.Args[0], "agent", "--name", a.name, "--data-dir", dir,
			"--server", "http://"+ctlAddr, "--token-file", filepath.Join(ctlDir, "agent-token"),
			"--listen", h.ip+":7677", "--lease-interval", "500ms")
		a.cmd.Env = append(os.Environ(), "KEELSON_TEST_MAIN=1")
		logf, _ := os.Create(filepath.Join(t.TempDir(), "agent.log"))
		a.cmd.Stdout, a.cmd.Stderr = logf, logf
		t.Cleanup(func() {
			if t.Failed() {
				b, _ := os.ReadFile(logf.Name())
				t.Logf("agent %s log:\n%s", a.name, b)
			}
		})
		if err := a.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
	}
	// Both hosts first, so that the pods spread over them.
	waitNodes(t, c, 2)
	files := sleeperDeployment(4)
	files["echo.yaml"] = echoService(2)
	repo.CommitFiles("web", files)
	t.Cleanup(func() {
		none := sleeperDeployment(0)
		none["echo.yaml"] = echoService(0)
		repo.CommitFiles("none", none)
		_ = exec.Command("ip", "-n", hosts[1].ns, "link", "set", "eth0", "up").Run()
		time.Sleep(4 * time.Second)
		for _, a := range agents {
			_ = a.cmd.Process.Signal(os.Interrupt)
			_ = a.cmd.Wait()
			// Whatever the agent left (its link was cut), a standalone agent
			// in the same namespace cleans up.
			cleaner := exec.Command("nsenter", "--net=/run/netns/"+a.h.ns, os.Args[0], "agent", "--name", a.name, "--data-dir", a.dir,
				"--pod-manifests", t.TempDir(), "--pod-cidr", "10.250.0.0/24", "--listen", "127.0.0.1:0")
			cleaner.Env = append(os.Environ(), "KEELSON_TEST_MAIN=1")
			if err := cleaner.Start(); err == nil {
				time.Sleep(6 * time.Second)
				_ = cleaner.Process.Signal(os.Interrupt)
				_ = cleaner.Wait()
			}
			_ = ebpf.Unpin(ebpf.Config{Node: a.name})
			_ = network.RemoveNode(network.Config{Node: a.name}) // its bridge went with its namespace; its run directory stays
			_ = os.RemoveAll(a.dir)
		}
		ctl.stop()
	})
	perNode := func() map[string]int {
		out := map[string]int{}
		l, err := c.Pods(context.Background(), client.PodQuery{})
		if err != nil {
			return out
		}
		for _, p := range l.Items {
			if p.Status.Phase == "Running" {
				out[p.Spec.NodeName]++
			}
		}
		return out
	}
	eventually(t, "pods on both hosts", func() string {
		got := perNode()
		if got[agents[0].name] == 0 || got[agents[1].name] == 0 || got[agents[0].name]+got[agents[1].name] != 6 {
			return fmt.Sprintf("running per node: %v", got)
		}
		return ""
	})
	// Pods reach pods on the other host (routes between the nodes' pod
	// CIDRs), and a Service spreads over both hosts, by name.
	echo, _ := c.Pods(context.Background(), client.PodQuery{Selector: "app=echo"})
	byNode := map[string]corev1.Pod{}
	for _, p := range echo.Items {
		byNode[p.Spec.NodeName] = p
	}
	from, to := byNode[agents[0].name], byNode[agents[1].name]
	if from.Name == "" || to.Name == "" {
		t.Fatalf("echo pods are not on both hosts: %v", byNode)
	}
	ask := func(url string) (string, error) {
		code, out, errOut := cli(t, "exec", from.Name, "--server", "http://"+ctlAddr, "--", "/testapp", "get", url)
		if code != 0 {
			return "", fmt.Errorf("get %s from %s: %d %s", url, from.Name, code, errOut)
		}
		return strings.TrimSpace(out), nil
	}
	eventually(t, "a pod on the other host by its address", func() string {
		out, err := ask("http://" + net.JoinHostPort(to.Status.PodIP, "8080") + "/hostname")
		if err != nil {
			return err.Error()
		}
		if out != to.Name {
			return "answered by " + out
		}
		return ""
	})
	eventually(t, "a Service spreads over both hosts", func() string {
		seen := map[string]bool{}
		for range 30 {
			out, err := ask("http://echo/hostname")
			if err != nil {
				return err.Error()
			}
			seen[out] = true
		}
		if !seen[from.Name] || !seen[to.Name] {
			return fmt.Sprintf("seen %v", seen)
		}
		return ""
	})
	// logs through the controller reach a pod on the other host.
	l2, _ := c.Pods(context.Background(), client.PodQuery{Node: agents[1].name})
	if len(l2.Items) > 0 {
		if code, _, errOut := cli(t, "logs", l2.Items[0].Name, "--server", "http://"+ctlAddr); code != 0 {
			t.Errorf("logs of a pod on the second host: %s", errOut)
		}
	}
	// Cut the second host's link.
	if out, err := exec.Command("ip", "-n", hosts[1].ns, "link", "set", "eth0", "down").CombinedOutput(); err != nil {
		t.Fatalf("cut link: %v %s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got := perNode()
		if got[agents[0].name] == 6 && got[agents[1].name] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pods of the cut-off host not replaced: %v", got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// podsSettle checks that once the pods run, nothing changes: no pod is
// written again for 2 s. (Each status a node sent was written and woke the
// node, which sent its pods again: keelson up with three pods used 1.75
// cores.)
func podsSettle(t testing.TB, c *client.Client) {
	t.Helper()
	eventually(t, "no pod written for 2 s", func() string {
		l1, err := c.Pods(context.Background(), client.PodQuery{})
		if err != nil {
			return err.Error()
		}
		time.Sleep(2 * time.Second)
		l2, err := c.Pods(context.Background(), client.PodQuery{})
		if err != nil {
			return err.Error()
		}
		if l2.Index != l1.Index {
			return fmt.Sprintf("pods index %d → %d", l1.Index, l2.Index)
		}
		return ""
	})
}

// waitNodes waits until n nodes are Ready.
func waitNodes(t testing.TB, c *client.Client, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d nodes ready", n), func() string {
		l, err := c.Nodes(context.Background(), client.Query{})
		if err != nil {
			return err.Error()
		}
		ready := 0
		for _, nd := range l.Items {
			for _, cond := range nd.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		if ready != n {
			return fmt.Sprintf("%d ready", ready)
		}
		return ""
	})
}

// echoService is a Deployment "echo" of n testapp pods behind a Service
// "echo" on port 80.
func echoService(n int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  replicas: %d
  selector: {matchLabels: {app: echo}}
  template:
    metadata: {labels: {app: echo}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: '%s', imagePullPolicy: Never, ports: [{name: http, containerPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  selector: {app: echo}
  ports:
  - {port: 80, targetPort: http}
`, n, testimages.TestappRef)
}

// sleeperDeployment is a Deployment "web" of n busybox pods that stop at
// once on SIGTERM, as a file map for gittest.Repo.CommitFiles.
func sleeperDeployment(n int) map[string]string {
	return map[string]string{"web.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: c, image: '%s', imagePullPolicy: Never, command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]}
`, n, testimages.BusyboxRef)}
}

// waitAgentToken waits until a controller started with --data-dir ctlDir
// has written the token agents join with (it is up).
func waitAgentToken(t *testing.T, ctlDir string) {
	t.Helper()
	eventually(t, "controller up", func() string {
		if _, err := os.Stat(filepath.Join(ctlDir, "agent-token")); err != nil {
			return err.Error()
		}
		return ""
	})
}
