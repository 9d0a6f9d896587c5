package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/ebpf"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/testimages"
	"github.com/keelson/keelson/nodeagent/network"
)

// procCluster is a controller and one agent, each its own process (so
// that either can be killed with SIGKILL), following a test's repository,
// with the test images in the agent's data directory.
type procCluster struct {
	ctl, agent         *proc
	ctlArgs            []string // to start the controller again
	ctlAddr, agentAddr string
	ctlDir, agentDir   string
	node               string
	c                  *client.Client // the controller's API
}

// startProcCluster starts a controller on repo (with extra flags ctlArgs,
// such as its CIDRs) and an agent named node (with agentArgs). At the end
// of the test it removes every manifest through Git, waits for the pods to
// go, stops both and removes what the node made.
func startProcCluster(t *testing.T, repo *gittest.Repo, node string, ctlArgs, agentArgs []string) *procCluster {
	t.Helper()
	pc := &procCluster{ctlDir: t.TempDir(), node: node, ctlAddr: freeAddr(t), agentAddr: freeAddr(t)}
	var err error
	pc.agentDir, err = os.MkdirTemp("", "kp") // short: containerd's socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(pc.agentDir) })
	testimages.Build(t, filepath.Join(pc.agentDir, "images"))
	t.Cleanup(func() {
		_ = network.RemoveNode(network.Config{Node: node})
		_ = ebpf.Unpin(ebpf.Config{Node: node})
	})
	pc.ctlArgs = append([]string{"controller", "--repo", repo.Dir, "--data-dir", pc.ctlDir, "--listen", pc.ctlAddr}, ctlArgs...)
	pc.ctl = startProc(t, pc.ctlArgs...)
	pc.c, _ = client.New("http://" + pc.ctlAddr)
	waitAgentToken(t, pc.ctlDir)
	pc.agent = startProc(t, append([]string{"agent", "--name", node, "--data-dir", pc.agentDir, "--server", "http://" + pc.ctlAddr,
		"--token-file", filepath.Join(pc.ctlDir, "agent-token"), "--listen", pc.agentAddr}, agentArgs...)...)
	t.Cleanup(func() {
		for _, f := range strings.Fields(repo.Git("ls-files")) {
			repo.Remove(f)
		}
		repo.CommitFiles("remove everything", map[string]string{"cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n"})
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			if l, err := pc.c.Pods(context.Background(), client.PodQuery{}); err == nil && len(l.Items) == 0 {
				break
			}
		}
		waitAgentEmpty(t, pc.agentAddr)
		pc.agent.stop()
		_ = downNode(context.Background(), pc.agentDir, node, io.Discard)
		pc.ctl.stop()
	})
	return pc
}

// restartController kills the controller with SIGKILL and starts it again.
func (pc *procCluster) restartController(t *testing.T) {
	pc.ctl.kill9()
	pc.ctl = startProc(t, pc.ctlArgs...)
}

// cidrs are a cluster and a service CIDR of a test's own, from its slot
// (tests of this package run in parallel).
func cidrs(slot int) []string {
	id := os.Getpid() % 10000
	return []string{"--cluster-cidr", fmt.Sprintf("10.%d.0.0/16", 100+(id+slot)%50), "--service-cidr", fmt.Sprintf("10.%d.0.0/16", 150+(id+slot)%50)}
}
