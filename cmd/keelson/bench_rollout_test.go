package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"encoding/json"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/internal/gittest"
	"github.com/keelson/keelson/internal/testimages"
)

// tenReplicas is a Deployment of 10 testapp pods (maxSurge 25%, readiness
// probed every second) behind a Service, at a version.
func tenReplicas(version string) map[string]string {
	return map[string]string{"web.yaml": fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 10
  strategy: {rollingUpdate: {maxSurge: 25%%, maxUnavailable: 25%%}}
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
        resources: {requests: {cpu: 10m, memory: 16Mi}}
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
`, testimages.TestappRef, version)}
}

// withScaleDownDelay is a manifest of tenReplicas with the Deployment's
// keelson.dev/scale-down-delay annotation.
func withScaleDownDelay(tb testing.TB, files map[string]string, delay string) map[string]string {
	const at = "metadata: {name: web}\nspec:\n  replicas: 10"
	if !strings.Contains(files["web.yaml"], at) {
		tb.Fatalf("web.yaml has no %q to annotate", at)
	}
	files["web.yaml"] = strings.Replace(files["web.yaml"], at,
		"metadata: {name: web, annotations: {keelson.dev/scale-down-delay: \""+delay+"\"}}\nspec:\n  replicas: 10", 1)
	return files
}

// BenchmarkRollout measures GitOps rollouts as users see them, on keelson
// up with real containers and a load generator on the Service the whole
// time: a commit changing the template of a 10-replica Deployment until
// the rollout is complete (target ≤ 5 s), then `git revert` of it until
// the previous version is Ready on all 10 (target ≤ 2 s); failed requests
// during both (target 0). Each sample alternates the two. Then the same
// with the Deployment's keelson.dev/scale-down-delay at 60s: the rollout
// parks the old pods instead of stopping them, and the revert takes them
// back (rollout-parked-p50-ms, revert-parked-p50-ms).
func BenchmarkRollout(b *testing.B) {
	settle()
	repo := gittest.NewRepo(b, "", "rollout-bench")
	repo.CommitFiles("v0", tenReplicas("v0"))
	o := startBenchUp(b, repo, "kbr", fmt.Sprintf("bench-roll-%d", os.Getpid()%10000))
	c, _ := client.New("http://" + o.controller.listen)
	// complete waits until the Deployment runs the template of commit sha
	// on every replica, all available, and returns when that was seen.
	complete := func(sha string) time.Time {
		deadline := time.Now().Add(2 * time.Minute)
		var idx uint64
		for time.Now().Before(deadline) {
			l, err := c.Objects(context.Background(), client.Query{Kind: "Deployment", Index: idx, Wait: 10 * time.Second})
			if err != nil || len(l.Items) != 1 {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			idx = l.Index
			var d struct {
				Status appsv1.DeploymentStatus `json:"status"`
			}
			_ = json.Unmarshal(l.Items[0].Object, &d)
			st := d.Status
			if os.Getenv("KEELSON_BENCH_TRACE") != "" {
				fmt.Fprintf(os.Stderr, "TRACE %s rev=%s replicas=%d updated=%d ready=%d available=%d\n", time.Now().Format("15:04:05.000"), l.Items[0].Revision[:7], st.Replicas, st.UpdatedReplicas, st.ReadyReplicas, st.AvailableReplicas)
			}
			if l.Items[0].Revision == sha && st.UpdatedReplicas == 10 && st.AvailableReplicas == 10 && st.Replicas == 10 && st.ObservedGeneration > 0 {
				return time.Now()
			}
		}
		b.Fatalf("commit %s never completed", sha)
		return time.Time{}
	}
	complete(repo.Head())
	var clusterIP string
	l, _ := c.Services(context.Background(), client.Query{})
	for _, it := range l.Items {
		if it.Service.Name == "web" {
			clusterIP = it.Service.Spec.ClusterIP
		}
	}
	var forward, back, forwardParked, backParked []time.Duration
	var failed int64
	// sample is a rollout to version and its revert, under load.
	sample := func(version, delay string) (time.Duration, time.Duration) {
		// 4 clients, a request every 25 ms each: 160 requests/s, enough
		// to see any failure, little enough not to starve the 2 cores
		// the rollout itself needs.
		load := startLoadEvery(net.JoinHostPort(clusterIP, "80"), 25*time.Millisecond)
		start := time.Now()
		if os.Getenv("KEELSON_BENCH_TRACE") != "" {
			fmt.Fprintf(os.Stderr, "TRACE %s commit %s\n", start.Format("15:04:05.000"), version)
		}
		files := tenReplicas(version)
		if delay != "" {
			files = withScaleDownDelay(b, files, delay)
		}
		sha := repo.CommitFiles(version, files)
		fwd := complete(sha).Sub(start)
		start = time.Now()
		if os.Getenv("KEELSON_BENCH_TRACE") != "" {
			fmt.Fprintf(os.Stderr, "TRACE %s revert\n", start.Format("15:04:05.000"))
		}
		repo.Git("revert", "--no-edit", sha)
		rev := complete(repo.Head()).Sub(start)
		load.halt()
		failed += load.failed.Load()
		if load.failed.Load() > 0 {
			b.Logf("failed requests: %s", load.report())
		}
		return fwd, rev
	}
	for range b.N {
		for i := range 3 {
			f, r := sample(fmt.Sprintf("v%d", i+1), "")
			forward, back = append(forward, f), append(back, r)
		}
		// With a scale-down delay (the commit changes no template).
		complete(repo.CommitFiles("scale-down delay", withScaleDownDelay(b, tenReplicas("v0"), "60s")))
		for i := range 3 {
			f, r := sample(fmt.Sprintf("p%d", i+1), "60s")
			forwardParked, backParked = append(forwardParked, f), append(backParked, r)
		}
		// Without it again: the parked pods go.
		complete(repo.CommitFiles("no scale-down delay", tenReplicas("v0")))
	}
	p50 := func(ds []time.Duration) float64 {
		s := slices.Clone(ds)
		slices.Sort(s)
		return float64(s[len(s)/2].Milliseconds())
	}
	b.ReportMetric(p50(forward), "rollout-p50-ms")
	b.ReportMetric(p50(back), "revert-p50-ms")
	b.ReportMetric(p50(forwardParked), "rollout-parked-p50-ms")
	b.ReportMetric(p50(backParked), "revert-parked-p50-ms")
	b.ReportMetric(float64(failed), "failed-requests")
	b.ReportMetric(0, "ns/op")
	b.Logf("rollouts %v, reverts %v; with a scale-down delay: rollouts %v, reverts %v", forward, back, forwardParked, backParked)
}
