package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/testimages"
)

// versioned is a Deployment "web" of 4 testapp pods whose VERSION is the
// version (the template changes with it), or an image that does not
// exist, behind a Service "web". The pods keep answering for a second
// after SIGTERM (closing kept-alive connections after their next answer),
// as an application that drains does.
func versioned(version, image string) map[string]string {
	if image == "" {
		image = testimages.TestappRef
	}
	return map[string]string{"web.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  progressDeadlineSeconds: 8
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: web
        image: %s
        imagePullPolicy: Never
        args: ["--term-delay=1s"]
        env: [{name: VERSION, value: "%s"}]
        ports: [{name: http, containerPort: 8080}]
        readinessProbe:
          httpGet: {path: /healthz, port: http}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
`, image, version)}
}

// loadGen sends requests to addr until stopped, from several clients, on
// new connections (each is balanced anew) and on kept-alive ones.
type loadGen struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	wg         sync.WaitGroup
}

func startLoad(addr string) *loadGen { return startLoadEvery(addr, 5*time.Millisecond) }

// startLoadEvery is startLoad with each client pausing pause between requests.
func startLoadEvery(addr string, pause time.Duration) *loadGen {
	g := &loadGen{stop: make(chan struct{})}
	for i := range 4 {
		tr := &http.Transport{DisableKeepAlives: i%2 == 0}
		c := &http.Client{Timeout: 5 * time.Second, Transport: tr}
		g.wg.Go(func() {
			defer tr.CloseIdleConnections()
			for {
				select {
				case <-g.stop:
					return
				default:
				}
				resp, err := c.Get("http://" + addr + "/env")
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err == nil && resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %s", resp.Status)
					}
				}
				if err != nil {
					g.failed.Add(1)
					g.mu.Lock()
					if len(g.errs) < 10 {
						g.errs = append(g.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
					}
					g.mu.Unlock()
				} else {
					g.ok.Add(1)
				}
				time.Sleep(pause)
			}
		})
	}
	return g
}

func (g *loadGen) halt() { close(g.stop); g.wg.Wait() }

func (g *loadGen) report() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return fmt.Sprintf("%d ok, %d failed %v", g.ok.Load(), g.failed.Load(), g.errs)
}

// TestRolloutEndToEnd rolls a Deployment through Git with real containers
// and a load generator on its Service the whole time: v1 → v2 with no
// failed request; v3 (an image that does not exist) halts within the
// bounds and is reported Degraded while v2 serves; reverting v3 and then
// v2 goes back to v1 on its old ReplicaSet; killing the controller in the
// middle of a rollout, the rollout finishes once it returns. No request
// fails in all of it.
func TestRolloutEndToEnd(t *testing.T) {
	gittest.RequireRoot(t, "runs containers and loads BPF programs")
	id := os.Getpid() % 10000
	repo := gittest.NewRepo(t, "", "rollout-e2e")
	v1 := repo.CommitFiles("web v1", versioned("v1", ""))

	pc := startProcCluster(t, repo, fmt.Sprintf("roll-%d", id), cidrs(17), []string{"--ingress-http-port", "0", "--log-level", "debug"})
	c, ctlAddr := pc.c, pc.ctlAddr

	applied := func(sha string) {
		t.Helper()
		t.Logf("%s commit %s", time.Now().Format("15:04:05.000"), sha[:12])
		eventually(t, "commit "+sha[:12]+" applied", func() string {
			st, err := c.Status(context.Background(), client.Query{})
			if err != nil {
				return err.Error()
			}
			if st.Applied == nil || st.Applied.SHA != sha {
				return fmt.Sprintf("applied %+v", st.Applied)
			}
			return ""
		})
	}
	rollout := func(timeout string) (int, string) {
		code, out, errOut := cli(t, "rollout", "status", "deploy/web", "--timeout", timeout, "--server", "http://"+ctlAddr)
		return code, out + errOut
	}
	applied(v1)
	if code, out := rollout("90s"); code != 0 {
		t.Fatalf("v1 rollout: %d %s", code, out)
	}
	rsOf := func() []string {
		l, _ := c.Objects(context.Background(), client.Query{Kind: "ReplicaSet"})
		var names []string
		for _, o := range l.Items {
			names = append(names, o.Name)
		}
		return names
	}
	v1RS := rsOf()
	var clusterIP string
	l, _ := c.Services(context.Background(), client.Query{})
	for _, it := range l.Items {
		if it.Service.Name == "web" {
			clusterIP = it.Service.Spec.ClusterIP
		}
	}
	load := startLoad(net.JoinHostPort(clusterIP, "80"))
	defer func() {
		load.halt()
		if load.failed.Load() > 0 {
			t.Errorf("failed requests during the rollouts: %s", load.report())
		} else {
			t.Logf("requests through the Service during the rollouts: %s", load.report())
		}
	}()
	eventually(t, "load flowing", func() string {
		if load.ok.Load() < 20 {
			return load.report()
		}
		return ""
	})

	// v1 → v2.
	v2 := repo.CommitFiles("web v2", versioned("v2", ""))
	applied(v2)
	if code, out := rollout("90s"); code != 0 {
		t.Fatalf("v2 rollout: %d %s", code, out)
	}
	if n := load.failed.Load(); n > 0 {
		t.Errorf("v1 -> v2: %s", load.report())
	}

	// v3 cannot start: halted, reported, v2 keeps serving.
	v3 := repo.CommitFiles("web v3 (broken)", versioned("v3", "keelson.test/missing:1"))
	applied(v3)
	if code, out := rollout("60s"); code == 0 || !strings.Contains(out, "progress deadline") {
		t.Errorf("v3 rollout status: %d %s, want a failure naming the progress deadline", code, out)
	}
	eventually(t, "v3 reported Degraded", func() string {
		st, err := c.Status(context.Background(), client.Query{})
		if err != nil || len(st.Recent) == 0 || st.Recent[0].SHA != v3 || st.Recent[0].Health != "Degraded" {
			return fmt.Sprintf("status: %v %+v", err, st.Recent)
		}
		return ""
	})
	running := 0
	pods, _ := c.Pods(context.Background(), client.PodQuery{Selector: "app=web"})
	for _, p := range pods.Items {
		if p.Status.Phase == "Running" && strings.Contains(fmt.Sprint(p.Spec.Containers[0].Env), "v2") {
			running++
		}
	}
	if running < 3 {
		t.Errorf("%d v2 pods running while v3 fails; maxUnavailable 25%% of 4 keeps 3", running)
	}

	// Revert v3, then v2: back to v1 on its old ReplicaSet.
	repo.Git("revert", "--no-edit", v3)
	applied(repo.Head())
	if code, out := rollout("90s"); code != 0 {
		t.Fatalf("revert of v3: %d %s", code, out)
	}
	repo.Git("revert", "--no-edit", v2)
	// Kill the controller while this rollout runs; it finishes once the
	// controller is back.
	time.Sleep(300 * time.Millisecond)
	t.Logf("%s kill -9 the controller", time.Now().Format("15:04:05.000"))
	pc.restartController(t)
	applied(repo.Head())
	if code, out := rollout("120s"); code != 0 {
		t.Fatalf("revert of v2 across a controller restart: %d %s", code, out)
	}
	rsNow := rsOf()
	found := false
	for _, n := range rsNow {
		if n == v1RS[0] {
			found = true
		}
	}
	if !found {
		t.Errorf("ReplicaSets after the reverts %v; want v1's %v again (no new template hash)", rsNow, v1RS)
	}
	pods, _ = c.Pods(context.Background(), client.PodQuery{Selector: "app=web"})
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && !strings.HasPrefix(p.Name, v1RS[0]+"-") {
			t.Errorf("pod %s after the reverts is not of v1's ReplicaSet %s", p.Name, v1RS[0])
		}
	}
	if st, _ := c.Status(context.Background(), client.Query{}); st.Applied == nil || st.Applied.SHA == v1 {
		t.Errorf("applied after the reverts: %+v, want the revert commit (the template of %s)", st.Applied, v1[:12])
	}
}
