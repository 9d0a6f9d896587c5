package main

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/keelson/keelson/apiserver/client"
)

// outsideHost makes a network namespace behind a veth pair, a client
// outside the node: the node's side is hostVeth with hostIP, the client's
// eth0 has clientIP and routes everything through the node. Removed at the
// end of the test.
type outsideHost struct {
	ns, hostVeth, hostIP, clientIP string
}

func newOutsideHost(t *testing.T, name string, net, sub int) outsideHost {
	t.Helper()
	o := outsideHost{ns: name, hostVeth: name + "v", hostIP: fmt.Sprintf("10.%d.%d.1", net, sub), clientIP: fmt.Sprintf("10.%d.%d.2", net, sub)}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	run("ip", "netns", "add", o.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", o.ns).Run() })
	run("ip", "link", "add", o.hostVeth, "type", "veth", "peer", "name", "eth0", "netns", o.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", o.hostVeth).Run() })
	run("ip", "addr", "add", o.hostIP+"/30", "dev", o.hostVeth)
	run("ip", "link", "set", o.hostVeth, "up")
	run("ip", "-n", o.ns, "addr", "add", o.clientIP+"/30", "dev", "eth0")
	run("ip", "-n", o.ns, "link", "set", "eth0", "up")
	run("ip", "-n", o.ns, "link", "set", "lo", "up")
	run("ip", "-n", o.ns, "route", "add", "default", "via", o.hostIP)
	return o
}

// curl runs curl in the outside host with args and returns its output.
func (o outsideHost) curl(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", o.ns, "curl", "-sS", "--max-time", "5"}, args...)...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("curl %v: %w: %s", args, err, out)
	}
	return string(out), nil
}

// waitAgentEmpty waits (up to 30 s) until the agent at addr has stopped
// and torn down every pod, so that stopping it leaves no container behind.
func waitAgentEmpty(t *testing.T, addr string) {
	t.Helper()
	c, err := client.New("http://" + addr)
	if err != nil {
		return
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if l, err := c.Pods(context.Background(), client.PodQuery{}); err == nil && len(l.Items) == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the agent at %s still had pods after 30 s", addr)
}
