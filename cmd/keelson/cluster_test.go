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
