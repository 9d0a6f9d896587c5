package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keelson/keelson/apiserver/client"
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
	repo.CommitFiles("web", map[string]string{"web.yaml": fmt.Sprintf(`apiVersion: apps/v1
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
      - {name: c, image: '%s', imagePullPolicy: Never, command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]}
`, testimages.BusyboxRef)})
	ctlDir := t.TempDir()
	agentDir, err := os.MkdirTemp("", "kc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(agentDir) })
	testimages.Build(t, filepath.Join(agentDir, "images"))
	node := fmt.Sprintf("kill9-%d", os.Getpid()%10000)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", network.DefaultBridgeName(node)).Run() })
	ctlAddr, agentAddr := freeAddr(t), freeAddr(t)
	ctlArgs := []string{"controller", "--repo", repo.Dir, "--data-dir", ctlDir, "--listen", ctlAddr,
		"--cluster-cidr", fmt.Sprintf("10.%d.0.0/16", 100+os.Getpid()%100), "--log-level", "debug"}
	ctl := startProc(t, ctlArgs...)
	c, _ := client.New("http://" + ctlAddr)
	eventually(t, "controller up", func() string {
		if _, err := os.Stat(filepath.Join(ctlDir, "agent-token")); err != nil {
			return err.Error()
		}
		return ""
	})
	agent := startProc(t, "agent", "--name", node, "--data-dir", agentDir, "--server", "http://"+ctlAddr,
		"--token-file", filepath.Join(ctlDir, "agent-token"), "--listen", agentAddr, "--log-level", "debug")
	t.Cleanup(func() {
		// Remove the pods through Git, then stop both.
		repo.Remove("web.yaml")
		repo.CommitFiles("remove", map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			l, err := c.Pods(context.Background(), client.PodQuery{})
			if err == nil && len(l.Items) == 0 {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		time.Sleep(time.Second) // the agent's teardown after the pods left
		agent.stop()
		ctl.stop()
	})
	var before []string
	eventually(t, "2 pods running", func() string {
		before = podSet(t, c)
		if len(before) != 2 {
			return fmt.Sprintf("running: %v", before)
		}
		return ""
	})

	// top, through the controller, from the node's cgroups.
	if code, out, errOut := cli(t, "top", "pods", "--server", "http://"+ctlAddr); code != 0 || strings.Count(out, "web-") != 2 || !strings.Contains(out, "Mi") {
		t.Errorf("top pods: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := cli(t, "top", "nodes", "--server", "http://"+ctlAddr); code != 0 || !strings.Contains(out, node) {
		t.Errorf("top nodes: %d\n%s%s", code, out, errOut)
	}

	ctl.kill9()
	start := time.Now()
	ctl = startProc(t, ctlArgs...)
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
	deploy := func(n int) map[string]string {
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
	repo.CommitFiles("web", deploy(4))
	ctlDir := t.TempDir()
	ctlAddr := freeAddr(t)
	ctl := startProc(t, "controller", "--repo", repo.Dir, "--data-dir", ctlDir, "--listen", ctlAddr,
		"--cluster-cidr", fmt.Sprintf("10.%d.0.0/16", 100+(os.Getpid()+7)%100),
		"--node-lease-timeout", "3s", "--pod-eviction-timeout", "1s", "--log-level", "debug")
	c, _ := client.New("http://" + ctlAddr)
	eventually(t, "controller up", func() string {
		if _, err := os.Stat(filepath.Join(ctlDir, "agent-token")); err != nil {
			return err.Error()
		}
		return ""
	})
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
	t.Cleanup(func() {
		repo.CommitFiles("none", deploy(0))
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
			_ = exec.Command("ip", "link", "del", network.DefaultBridgeName(n.name)).Run()
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
	eventually(t, "controller up", func() string {
		if _, err := os.Stat(filepath.Join(ctlDir, "agent-token")); err != nil {
			return err.Error()
		}
		return ""
	})
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
	eventually(t, "controller up", func() string {
		if _, err := os.Stat(filepath.Join(ctlDir, "agent-token")); err != nil {
			return err.Error()
		}
		return ""
	})
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
