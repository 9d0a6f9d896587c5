package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/internal/gittest"
)

// rolloutApps are a Deployment web (image, extra spec lines), a Deployment
// slow that can never be scheduled, a DaemonSet and a StatefulSet.
func rolloutApps(image, webSpec string) map[string]string {
	deploy := func(name, spec string) string {
		return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %s}
spec:
  replicas: 3
  selector: {matchLabels: {app: %s}}
%s  template:
    metadata: {labels: {app: %s}}
    spec:
      containers:
      - {name: c, image: %q}
`, name, name, spec, name, image)
	}
	slow := strings.Replace(strings.Replace(deploy("slow", ""), image, "slow:v1", 1), "    spec:\n", "    spec:\n      nodeSelector: {keelson.dev/nowhere: \"true\"}\n", 1)
	return map[string]string{
		"web.yaml":  deploy("web", webSpec),
		"slow.yaml": slow,
		"ds.yaml": `apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers:
      - {name: c, image: agent:v1}
`,
		"sts.yaml": `apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 2
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - {name: c, image: db:v1}
`,
	}
}

// TestRolloutStatus follows rollouts with `keelson rollout status` against a
// controller whose two simulated nodes report every pod they run Ready.
func TestRolloutStatus(t *testing.T) {
	repo := gittest.NewRepo(t, "", "rollout")
	v1 := repo.CommitFiles("v1", rolloutApps("web:v1", ""))
	dataDir := t.TempDir()
	server := startControllerIn(t, repo.Dir, "", dataDir)
	c, _ := simulatedNodes(t, server, dataDir)

	status := func(args ...string) (int, string, string) {
		t.Helper()
		return cli(t, append([]string{"rollout", "status", "--server", server}, args...)...)
	}
	applied := func(sha string) {
		t.Helper()
		eventually(t, "commit "+sha+" applied", func() string {
			o, err := c.Object(context.Background(), "Deployment", "default", "web")
			if err != nil {
				return err.Error()
			}
			if o.Revision != sha {
				return "at " + o.Revision
			}
			return ""
		})
	}

	applied(v1)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy/web"}, `deployment "web" successfully rolled out`},
		{[]string{"daemonset", "agent"}, `daemon set "agent" successfully rolled out`},
		{[]string{"sts/db"}, `partitioned roll out complete: 2 new pods have been updated...`},
	} {
		code, out, errOut := status(append(tc.args, "--timeout", "60s")...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code != 0 || lines[len(lines)-1] != tc.want {
			t.Errorf("rollout status %v: exit %d, stdout:\n%s\nstderr: %s\nwant the last line %q", tc.args, code, out, errOut, tc.want)
		}
	}

	// A new template rolls out.
	applied(repo.CommitFiles("v2", rolloutApps("web:v2", "")))
	if code, out, errOut := status("deploy/web", "--timeout", "60s"); code != 0 || !strings.HasSuffix(out, "deployment \"web\" successfully rolled out\n") {
		t.Errorf("rollout status after v2: exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}

	// A template no node can run fails its progress deadline.
	broken := rolloutApps("web:v3", "  progressDeadlineSeconds: 2\n")
	broken["web.yaml"] = strings.Replace(broken["web.yaml"], "    spec:\n", "    spec:\n      nodeSelector: {keelson.dev/nowhere: \"true\"}\n", 1)
	applied(repo.CommitFiles("v3", broken))
	code, out, errOut := status("deploy/web", "--timeout", "60s")
	if code != 1 || !strings.Contains(errOut, `deployment "web" exceeded its progress deadline`) || !strings.Contains(out, "Waiting for ") {
		t.Errorf("rollout status of a broken rollout: exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}

	// --timeout.
	code, out, errOut = status("deploy/slow", "--timeout", "1s")
	if code != 1 || !strings.Contains(errOut, `timed out after 1s waiting for the rollout of deployment "slow"`) ||
		!strings.Contains(out, `Waiting for deployment "slow" rollout to finish: 0 of 3 updated replicas are available...`) {
		t.Errorf("rollout status --timeout: exit %d, stdout:\n%s\nstderr: %s", code, out, errOut)
	}

	for _, args := range [][]string{{"svc/web"}, {"deploy/nope"}, {"deploy"}} {
		if code, _, errOut := status(args...); code != 1 || errOut == "" {
			t.Errorf("rollout status %v: exit %d, stderr %q; want an error", args, code, errOut)
		}
	}
}

// simulatedNodes joins two simulated nodes ("sim") to the controller at
// server, whose data directory is dataDir, and returns its client and a
// stop for the nodes (also called at the end of the test).
func simulatedNodes(t *testing.T, server, dataDir string) (*client.Client, func()) {
	t.Helper()
	waitAgentToken(t, dataDir)
	token, err := os.ReadFile(filepath.Join(dataDir, "agent-token"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(server)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		_ = simulate(ctx, c.WithToken(strings.TrimSpace(string(token))), "sim", 2, time.Second, slog.New(slog.DiscardHandler))
	})
	stop := sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return c, stop
}
