package reconciler

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/store"
)

const deploy3 = `apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 3
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: web:v1
        resources:
          requests: {cpu: 100m, memory: 64Mi}
`

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func clusterFixture(t *testing.T) (*Cluster, *Applier, *store.Store, *clock) {
	t.Helper()
	a, st := newApplier(t)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, err := NewCluster(st, ClusterConfig{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(c.cfg.StartupGrace) // past the start-up grace
	return c, a, st, clk
}

func register(t *testing.T, c *Cluster, name string) *corev1.Node {
	t.Helper()
	n, err := c.Register(context.Background(), &api.NodeRegistration{Node: corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"kubernetes.io/hostname": name}},
		Status: corev1.NodeStatus{Allocatable: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("4"), corev1.ResourceMemory: resource.MustParse("8Gi"), corev1.ResourcePods: resource.MustParse("110")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func settle(t *testing.T, c *Cluster) {
	t.Helper()
	for range 5 {
		if err := c.reconcileOnce(memdb.NewWatchSet()); err != nil {
			t.Fatal(err)
		}
	}
}

func podsOf(t *testing.T, st *store.Store) []*store.Pod {
	t.Helper()
	all, err := st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
	if err != nil {
		t.Fatal(err)
	}
	// Terminating pods are on their way out (termination_test.go follows
	// them): the controllers' tests look at the pods that stay.
	var ps []*store.Pod
	for _, p := range all {
		if !p.Terminating() {
			ps = append(ps, p)
		}
	}
	return ps
}

func TestDeploymentToScheduledPods(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	n1 := register(t, c, "n1")
	n2 := register(t, c, "n2")
	if n1.Spec.PodCIDR != "10.244.0.0/24" || n2.Spec.PodCIDR != "10.244.1.0/24" {
		t.Fatalf("pod CIDRs %s %s", n1.Spec.PodCIDR, n2.Spec.PodCIDR)
	}
	if again := register(t, c, "n1"); again.Spec.PodCIDR != n1.Spec.PodCIDR {
		t.Errorf("a node that registers again changed CIDR: %s", again.Spec.PodCIDR)
	}
	if _, err := a.Apply(revision("c1", map[string]string{"web.yaml": deploy3}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	ps := podsOf(t, st)
	if len(ps) != 3 {
		t.Fatalf("%d pods, want 3", len(ps))
	}
	perNode := map[string]int{}
	var rsName string
	for _, p := range ps {
		if p.NodeName == "" {
			t.Errorf("pod %s not scheduled: %+v", p.Key, p.Status().Conditions)
		}
		perNode[p.NodeName]++
		rsName = strings.TrimPrefix(p.OwnerKey, "ReplicaSet/default/")
		if p.Labels()[podTemplateHashLabel] == "" || !strings.HasPrefix(p.Name, rsName+"-") {
			t.Errorf("pod %s labels %v owner %s", p.Name, p.Labels(), p.OwnerKey)
		}
	}
	if perNode["n1"] == 0 || perNode["n2"] == 0 {
		t.Errorf("replicas not spread: %v", perNode)
	}

	// Scale down to 1.
	if _, err := a.Apply(revision("c2", map[string]string{"web.yaml": strings.Replace(deploy3, "replicas: 3", "replicas: 1", 1)}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	if ps := podsOf(t, st); len(ps) != 1 {
		t.Fatalf("after scaling to 1: %d pods", len(ps))
	}

	// A new template rolls out to a new ReplicaSet as the pods become
	// available; the old ReplicaSet stays, scaled to zero.
	if _, err := a.Apply(revision("c3", map[string]string{"web.yaml": strings.Replace(deploy3, "web:v1", "web:v2", 1)}), clk.t); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		settle(t, c)
		reportReady(t, c, st, clk.t)
	}
	ps = podsOf(t, st)
	if len(ps) != 3 {
		t.Fatalf("after a new template: %d pods", len(ps))
	}
	for _, p := range ps {
		if p.Base.Spec.Containers[0].Image != "web:v2" || strings.Contains(p.OwnerKey, rsName) {
			t.Errorf("pod %s of %s runs %s", p.Key, p.OwnerKey, p.Base.Spec.Containers[0].Image)
		}
	}
	rss, _ := st.Snapshot().Objects(memdb.NewWatchSet(), store.ObjectQuery{Kind: "ReplicaSet"})
	if len(rss) != 2 {
		t.Errorf("%d ReplicaSets, want 2 (the old one at zero)", len(rss))
	}

	// n2 stops renewing its lease: NotReady at 40 s, its pods replaced after 60 s more.
	clk.t = clk.t.Add(30 * time.Second)
	if err := c.RenewLease(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(15 * time.Second)
	settle(t, c)
	nodes, _ := st.Snapshot().Nodes(memdb.NewWatchSet())
	for _, n := range nodes {
		if ready := nodeReady(n.Node); ready != (n.Name == "n1") {
			t.Errorf("node %s ready=%v", n.Name, ready)
		}
	}
	clk.t = clk.t.Add(20 * time.Second)
	if err := c.RenewLease(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	clk.t = clk.t.Add(50 * time.Second)
	if err := c.RenewLease(context.Background(), "n1"); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	ps = podsOf(t, st)
	if len(ps) != 3 {
		t.Fatalf("after eviction: %d pods", len(ps))
	}
	for _, p := range ps {
		if p.NodeName != "n1" {
			t.Errorf("pod %s still on %s after its node died", p.Key, p.NodeName)
		}
	}

	// Removing the Deployment from Git removes everything it made.
	if _, err := a.Apply(revision("c4", map[string]string{"cm.yaml": cmA}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	if ps := podsOf(t, st); len(ps) != 0 {
		t.Errorf("%d pods left after the Deployment was removed", len(ps))
	}
}

func TestUnschedulableReasonAndAdoption(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "small")
	big := strings.Replace(deploy3, "cpu: 100m", "cpu: 64", 1)
	if _, err := a.Apply(revision("c1", map[string]string{"web.yaml": big}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	ps := podsOf(t, st)
	if len(ps) != 3 {
		t.Fatalf("%d pods", len(ps))
	}
	st0 := ps[0].Status()
	cond := scheduledCondition(&st0)
	if ps[0].NodeName != "" || cond == nil || cond.Message != "0/1 nodes available: 1 insufficient cpu" {
		t.Errorf("unschedulable pod: node %q condition %+v", ps[0].NodeName, cond)
	}

	// A node reports a pod the controller does not know: adopted when its
	// owner exists (one too many is scaled down the usual way), refused
	// when the controller deleted it (a report crossing the deletion) or no
	// owner wants it.
	p := ps[0].Object().DeepCopy()
	p.Name = "web-adopted"
	p.UID = "uid-adopted"
	p.Status.Phase = corev1.PodRunning
	if err := c.ReportPod(context.Background(), "small", p); err != nil {
		t.Errorf("adoption refused: %v", err)
	}
	settle(t, c)
	if n := len(podsOf(t, st)); n != 3 {
		t.Errorf("%d pods after adopting a fourth, want it scaled back to 3", n)
	}
	all, _ := st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
	var gone *corev1.Pod
	for _, x := range ps {
		found := false
		for _, y := range all {
			if y.Key == x.Key {
				found = true
			}
		}
		if !found {
			gone = x.Object()
		}
	}
	if gone == nil {
		pp := p.DeepCopy()
		found := false
		for _, y := range all {
			if y.Key == "default/web-adopted" {
				found = true
			}
		}
		if !found {
			gone = pp
		}
	}
	if gone != nil {
		again := gone.DeepCopy()
		again.Status.Phase = corev1.PodRunning
		if err := c.ReportPod(context.Background(), "small", again); err == nil || !strings.Contains(err.Error(), "deleted by the controller") {
			t.Errorf("a pod the controller deleted, reported once more: %v", err)
		}
	} else {
		t.Errorf("no pod was scaled away")
	}
	stray := p.DeepCopy()
	stray.Name = "stray"
	stray.OwnerReferences[0].Name = "nobody"
	for range 3 {
		if err := c.ReportPod(context.Background(), "small", stray); err == nil || !strings.Contains(err.Error(), "no owner") {
			t.Errorf("stray pod: %v", err)
		}
	}
	// Told once, on the node, however often the node reports it.
	ev, _ := st.Snapshot().Events(memdb.NewWatchSet(), "Node/small")
	var told []string
	for _, e := range ev {
		if e.Reason == "UnknownPod" {
			told = append(told, e.Message)
		}
	}
	if len(told) != 1 || !strings.Contains(told[0], "default/stray") || !strings.Contains(told[0], "nobody") {
		t.Errorf("UnknownPod events of the node: %q, want one naming the pod and its missing owner", told)
	}
}

func TestRestartedControllerWaitsForReports(t *testing.T) {
	a, st := newApplier(t)
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	c, err := NewCluster(st, ClusterConfig{Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	register(t, c, "n1")
	if _, err := a.Apply(revision("c1", map[string]string{"web.yaml": strings.Replace(deploy3, "replicas: 3", "replicas: 1", 1)}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	if ps := podsOf(t, st); len(ps) != 0 {
		t.Fatalf("during the start-up grace the controller made %d pods", len(ps))
	}
	// Nor ReplicaSets: their replicas are rollout state, which the first
	// pass after the grace rebuilds from the pods the agents report.
	rss, _ := st.Snapshot().Objects(memdb.NewWatchSet(), store.ObjectQuery{Kind: "ReplicaSet"})
	if len(rss) != 0 {
		t.Fatalf("%d ReplicaSets during the grace, want none", len(rss))
	}
	d, err := st.Snapshot().Object(memdb.NewWatchSet(), "Deployment/default/web")
	if err != nil {
		t.Fatal(err)
	}
	rsName := replicaSetName(d.Obj.(*appsv1.Deployment))
	// The agent reports the pod it still runs from before the restart.
	running := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: rsName + "-x1", Namespace: "default", UID: "u1",
			Labels:          map[string]string{"app": "web", podTemplateHashLabel: strings.TrimPrefix(rsName, "web-")},
			OwnerReferences: []metav1.OwnerReference{{Kind: "ReplicaSet", Name: rsName, Controller: ptrTrue()}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning},
	}
	if err := c.ReportPod(context.Background(), "n1", running); err != nil {
		t.Fatalf("report during start-up refused: %v", err)
	}
	clk.t = clk.t.Add(c.cfg.StartupGrace)
	settle(t, c)
	ps := podsOf(t, st)
	if len(ps) != 1 || ps[0].UID != "u1" || ps[0].NodeName != "n1" {
		t.Fatalf("after the grace: %d pods (%v); want only the adopted one", len(ps), ps)
	}
}

const daemonSet = `apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: logs
spec:
  selector:
    matchLabels: {app: logs}
  template:
    metadata:
      labels: {app: logs}
    spec:
      nodeSelector: {role: worker}
      containers:
      - name: c
        image: logs:v1
`

func setPhase(t *testing.T, st *store.Store, key string, phase corev1.PodPhase) {
	t.Helper()
	txn := st.Write()
	defer txn.Abort()
	p, err := txn.Snapshot().Pod(memdb.NewWatchSet(), key)
	if err != nil {
		t.Fatal(err)
	}
	c := *p
	c.Phase = string(phase)
	if err := txn.UpsertPod(&c); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestDaemonSetFollowsNodes(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	label := func(name string) {
		n := register(t, c, name)
		n.Labels["role"] = "worker"
		if _, err := c.Register(context.Background(), &api.NodeRegistration{Node: *n}); err != nil {
			t.Fatal(err)
		}
	}
	label("w1")
	register(t, c, "other")
	if _, err := a.Apply(revision("c1", map[string]string{"ds.yaml": daemonSet}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	nodesOf := func() map[string]int {
		out := map[string]int{}
		for _, p := range podsOf(t, st) {
			out[p.NodeName]++
		}
		return out
	}
	if got := nodesOf(); len(got) != 1 || got["w1"] != 1 {
		t.Fatalf("pods per node %v, want one on w1", got)
	}
	label("w2")
	settle(t, c)
	if got := nodesOf(); got["w1"] != 1 || got["w2"] != 1 || len(got) != 2 {
		t.Fatalf("after w2 joined: %v", got)
	}
	// w1 loses its label: its pod goes.
	register(t, c, "w1")
	settle(t, c)
	if got := nodesOf(); got["w1"] != 0 || got["w2"] != 1 {
		t.Fatalf("after w1 lost its label: %v", got)
	}
	o, _ := st.Snapshot().Object(memdb.NewWatchSet(), "DaemonSet/default/logs")
	if s, ok := o.Status.(*appsv1.DaemonSetStatus); !ok || s.DesiredNumberScheduled != 1 {
		t.Errorf("status %+v", o.Status)
	}
}

const job = `apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  completions: 3
  parallelism: 2
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: c
        image: migrate:v1
`

func TestJobCompletionsAndBackoffLimit(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	if _, err := a.Apply(revision("c1", map[string]string{"job.yaml": job}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	status := func() *batchv1.JobStatus {
		o, err := st.Snapshot().Object(memdb.NewWatchSet(), "Job/default/migrate")
		if err != nil {
			t.Fatal(err)
		}
		s, _ := o.Status.(*batchv1.JobStatus)
		return s
	}
	if ps := podsOf(t, st); len(ps) != 2 {
		t.Fatalf("%d pods, want parallelism 2", len(ps))
	}
	for _, p := range podsOf(t, st) {
		setPhase(t, st, p.Key, corev1.PodSucceeded)
	}
	settle(t, c)
	if s := status(); s.Succeeded != 2 || s.Active != 1 {
		t.Fatalf("after two successes: %+v", s)
	}
	for _, p := range podsOf(t, st) {
		if p.Phase != string(corev1.PodSucceeded) {
			setPhase(t, st, p.Key, corev1.PodSucceeded)
		}
	}
	settle(t, c)
	if s := status(); s.Succeeded != 3 || s.CompletionTime == nil || s.Active != 0 {
		t.Fatalf("after three successes: %+v", s)
	}
	if n := len(podsOf(t, st)); n != 3 {
		t.Errorf("a complete job made more pods: %d", n)
	}

	// A job whose pods fail stops after backoffLimit.
	bad := strings.Replace(strings.Replace(job, "name: migrate", "name: broken", 1), "completions: 3", "completions: 1", 1)
	if _, err := a.Apply(revision("c2", map[string]string{"job.yaml": job, "bad.yaml": bad}), clk.t); err != nil {
		t.Fatal(err)
	}
	for range 4 {
		settle(t, c)
		for _, p := range podsOf(t, st) {
			if strings.HasPrefix(p.Name, "broken-") && p.Phase != string(corev1.PodFailed) {
				setPhase(t, st, p.Key, corev1.PodFailed)
			}
		}
	}
	o, _ := st.Snapshot().Object(memdb.NewWatchSet(), "Job/default/broken")
	s := o.Status.(*batchv1.JobStatus)
	if s.Failed != 2 || !jobFailed(s) {
		t.Errorf("broken job status: failed %d conditions %+v", s.Failed, s.Conditions)
	}
}

const statefulSet = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 3
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      containers:
      - name: c
        image: db:v1
`

func setReadyPod(t *testing.T, st *store.Store, key string) {
	t.Helper()
	txn := st.Write()
	defer txn.Abort()
	p, err := txn.Snapshot().Pod(memdb.NewWatchSet(), key)
	if err != nil {
		t.Fatal(err)
	}
	c := *p
	s := p.Status()
	s.Phase = corev1.PodRunning
	s.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	c.SetStatus(&s)
	if err := txn.UpsertPod(&c); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
}

func podNames(t *testing.T, st *store.Store) []string {
	var out []string
	for _, p := range podsOf(t, st) {
		out = append(out, p.Name)
	}
	return out
}

func TestStatefulSetOrderedReady(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	if _, err := a.Apply(revision("c1", map[string]string{"ss.yaml": statefulSet}), clk.t); err != nil {
		t.Fatal(err)
	}
	for i, want := range [][]string{{"db-0"}, {"db-0", "db-1"}, {"db-0", "db-1", "db-2"}} {
		settle(t, c)
		if got := podNames(t, st); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("step %d: pods %v, want %v", i, got, want)
		}
		p, _ := st.Snapshot().Pod(memdb.NewWatchSet(), "default/"+want[i])
		if spec := p.Object().Spec; spec.Hostname != want[i] || spec.Subdomain != "db" {
			t.Errorf("pod %s hostname %q subdomain %q", want[i], spec.Hostname, spec.Subdomain)
		}
		setReadyPod(t, st, "default/"+want[i])
	}
	// Scale down removes the highest ordinal first, one at a time.
	if _, err := a.Apply(revision("c2", map[string]string{"ss.yaml": strings.Replace(statefulSet, "replicas: 3", "replicas: 1", 1)}), clk.t); err != nil {
		t.Fatal(err)
	}
	if err := c.reconcileOnce(memdb.NewWatchSet()); err != nil {
		t.Fatal(err)
	}
	if got := podNames(t, st); strings.Join(got, ",") != "db-0,db-1" {
		t.Fatalf("first scale-down step: %v", got)
	}
	settle(t, c)
	if got := podNames(t, st); strings.Join(got, ",") != "db-0" {
		t.Fatalf("after scale-down: %v", got)
	}
}

const cronJob = `apiVersion: batch/v1
kind: CronJob
metadata:
  name: report
spec:
  schedule: "*/5 * * * *"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          containers:
          - name: c
            image: report:v1
`

func TestCronJobSchedulesJobs(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	clk.t = time.Date(2026, 1, 1, 10, 1, 0, 0, time.UTC)
	if _, err := a.Apply(revision("c1", map[string]string{"cj.yaml": cronJob}), clk.t); err != nil {
		t.Fatal(err)
	}
	jobsNow := func() []string {
		objs, _ := st.Snapshot().Objects(memdb.NewWatchSet(), store.ObjectQuery{Kind: "Job"})
		var out []string
		for _, o := range objs {
			out = append(out, o.Name)
		}
		return out
	}
	settle(t, c)
	if j := jobsNow(); len(j) != 0 {
		t.Fatalf("jobs before the schedule: %v", j)
	}
	clk.t = time.Date(2026, 1, 1, 10, 5, 1, 0, time.UTC)
	settle(t, c)
	j := jobsNow()
	if len(j) != 1 || j[0] != fmt.Sprintf("report-%d", time.Date(2026, 1, 1, 10, 5, 0, 0, time.UTC).Unix()/60) {
		t.Fatalf("jobs at 10:05: %v", j)
	}
	if n := len(podsOf(t, st)); n != 1 {
		t.Errorf("%d pods for the job, want 1", n)
	}
	// At 10:10 the first one still runs: under Forbid the 10:10 run waits
	// for it (said once, however many passes see it), as in Kubernetes.
	clk.t = time.Date(2026, 1, 1, 10, 10, 1, 0, time.UTC)
	for range 3 {
		settle(t, c)
	}
	if j := jobsNow(); len(j) != 1 {
		t.Fatalf("Forbid: jobs %v", j)
	}
	if got := cronStatus(t, st).LastScheduleTime.Time; !got.Equal(at(10, 5, 0)) {
		t.Errorf("lastScheduleTime %s while the 10:10 run waits, want 10:05", got.Format("15:04:05"))
	}
	waits := 0
	evs, _ := st.Snapshot().Events(memdb.NewWatchSet(), "CronJob/default/report")
	for _, e := range evs {
		if e.Reason == "JobAlreadyActive" {
			waits++
			if !strings.Contains(e.Message, "2026-01-01T10:10:00Z waits: Job "+reportJob(at(10, 5, 0))) {
				t.Errorf("JobAlreadyActive says %q", e.Message)
			}
		}
	}
	if waits != 1 {
		t.Errorf("%d JobAlreadyActive events for the 10:10 run, want 1", waits)
	}
	// It completes: the waiting 10:10 run starts then, late, and history
	// keeps one finished Job.
	for _, p := range podsOf(t, st) {
		setPhase(t, st, p.Key, corev1.PodSucceeded)
	}
	clk.t = time.Date(2026, 1, 1, 10, 12, 0, 0, time.UTC)
	settle(t, c)
	if j := jobsNow(); !slices.Equal(j, []string{reportJob(at(10, 5, 0)), reportJob(at(10, 10, 0))}) {
		t.Fatalf("after the 10:05 Job ended: jobs %v, want it and the 10:10 one", j)
	}
	if got := podsByJob(t, st); !cmp.Equal(got, map[string]int{reportJob(at(10, 5, 0)): 1, reportJob(at(10, 10, 0)): 1}) {
		t.Errorf("pods by Job: %v, want one each", got)
	}
	for _, p := range podsOf(t, st) {
		if p.Phase != string(corev1.PodSucceeded) {
			setPhase(t, st, p.Key, corev1.PodSucceeded)
		}
	}
	settle(t, c)
	if j := jobsNow(); !slices.Equal(j, []string{reportJob(at(10, 10, 0))}) {
		t.Fatalf("history limit 1: jobs %v", j)
	}
	clk.t = time.Date(2026, 1, 1, 10, 15, 1, 0, time.UTC)
	settle(t, c)
	if j := jobsNow(); len(j) != 2 || j[1] != reportJob(at(10, 15, 0)) {
		t.Fatalf("at 10:15: jobs %v", j)
	}
}

// TestCronJobForbidPastDeadline: a run that waited under Forbid longer than
// startingDeadlineSeconds is missed, not started late; the next runs on
// time.
func TestCronJobForbidPastDeadline(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	clk.t = at(10, 1, 0)
	if _, err := a.Apply(revision("c1", map[string]string{"cj.yaml": cronJobWith("Forbid", "  startingDeadlineSeconds: 60\n")}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	clk.t = at(10, 5, 1)
	settle(t, c)
	clk.t = at(10, 10, 1)
	settle(t, c)
	for _, p := range podsOf(t, st) {
		setPhase(t, st, p.Key, corev1.PodSucceeded)
	}
	clk.t = at(10, 12, 0) // two minutes after 10:10
	settle(t, c)
	if j := jobNames(t, st); !slices.Equal(j, []string{reportJob(at(10, 5, 0))}) {
		t.Fatalf("after the deadline: jobs %v, want only the 10:05 one", j)
	}
	missed := false
	evs, _ := st.Snapshot().Events(memdb.NewWatchSet(), "CronJob/default/report")
	for _, e := range evs {
		missed = missed || (e.Reason == "MissSchedule" && strings.Contains(e.Message, "2026-01-01T10:10:00Z"))
	}
	if !missed {
		t.Errorf("no MissSchedule event for the 10:10 run: %v", evs)
	}
	clk.t = at(10, 15, 1)
	settle(t, c)
	if j := jobNames(t, st); !slices.Contains(j, reportJob(at(10, 15, 0))) {
		t.Errorf("at 10:15: jobs %v, want the 10:15 one", j)
	}
}

// reportReady is the agents' part: every scheduled pod is reported Running
// and Ready (its Ready condition keeps the time it first became so).
func reportReady(t *testing.T, c *Cluster, st *store.Store, now time.Time) {
	t.Helper()
	reportPods(t, c, st, now, func(*store.Pod) bool { return true })
}

// reportPods renews every node's lease and reports every scheduled pod
// Running, Ready when ready says so.
func reportPods(t *testing.T, c *Cluster, st *store.Store, now time.Time, ready func(*store.Pod) bool) {
	t.Helper()
	nodes, err := st.Snapshot().Nodes(memdb.NewWatchSet())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := c.RenewLease(context.Background(), n.Name); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range podsOf(t, st) {
		if p.NodeName == "" {
			continue
		}
		r := p.Object().DeepCopy()
		status := corev1.ConditionFalse
		if ready(p) {
			status = corev1.ConditionTrue
		}
		r.Status.Phase = corev1.PodRunning
		r.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.NewTime(now)}}
		if err := c.ReportPod(context.Background(), p.NodeName, r); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSortForDeletion(t *testing.T) {
	at := func(s int) metav1.Time { return metav1.NewTime(time.Date(2026, 1, 1, 0, 0, s, 0, time.UTC)) }
	pod := func(name, node string, phase corev1.PodPhase, readySince *metav1.Time, restarts int32, created metav1.Time) *store.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: created}, Status: corev1.PodStatus{Phase: phase}}
		if readySince != nil {
			p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: *readySince}}
		}
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{RestartCount: restarts}}
		p.Spec.NodeName = node
		return store.NewPod(p)
	}
	t10, t20 := at(10), at(20)
	ps := []*store.Pod{
		pod("ready-long", "n", corev1.PodRunning, &t10, 0, at(1)),
		pod("ready-recently", "n", corev1.PodRunning, &t20, 0, at(1)),
		pod("running-unready", "n", corev1.PodRunning, nil, 0, at(1)),
		pod("pending", "n", corev1.PodPending, nil, 0, at(1)),
		pod("unscheduled", "", corev1.PodPending, nil, 0, at(1)),
		pod("unknown", "n", corev1.PodUnknown, nil, 0, at(1)),
		pod("unready-restarting", "n", corev1.PodRunning, nil, 3, at(1)),
		pod("unready-newer", "n", corev1.PodRunning, nil, 0, at(5)),
	}
	sortForDeletion(ps)
	var got []string
	for _, p := range ps {
		got = append(got, p.Name)
	}
	want := []string{"unscheduled", "pending", "unknown", "unready-restarting", "unready-newer", "running-unready", "ready-recently", "ready-long"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("deletion order (-want +got):\n%s", diff)
	}
}

// TestReportKeepsReadySince: an agent that reports a pod Ready again (with
// the time of each report) does not move the time it became Ready; a
// report without a time gets the time it arrived.
func TestReportKeepsReadySince(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	if _, err := a.Apply(revision("c1", map[string]string{"web.yaml": strings.Replace(deploy3, "replicas: 3", "replicas: 1", 1)}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	key := podsOf(t, st)[0].Key
	report := func(status corev1.ConditionStatus, at time.Time) time.Time {
		t.Helper()
		p, _ := st.Snapshot().Pod(memdb.NewWatchSet(), key)
		r := p.Object().DeepCopy()
		r.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: status, LastTransitionTime: metav1.NewTime(at)}}
		if err := c.ReportPod(context.Background(), "n1", r); err != nil {
			t.Fatal(err)
		}
		p, _ = st.Snapshot().Pod(memdb.NewWatchSet(), key)
		return p.ReadySince.Time()
	}
	t0 := clk.t
	for i, tc := range []struct {
		status   corev1.ConditionStatus
		at, want time.Time
	}{
		{corev1.ConditionTrue, t0, t0},
		{corev1.ConditionTrue, t0.Add(5 * time.Second), t0},                       // again Ready: still since t0
		{corev1.ConditionFalse, t0.Add(9 * time.Second), t0.Add(9 * time.Second)}, // a change moves it
		{corev1.ConditionTrue, time.Time{}, clk.t.Add(time.Minute)},               // no time: the report's
	} {
		clk.t = t0.Add(time.Minute)
		if got := report(tc.status, tc.at); !got.Equal(tc.want) {
			t.Errorf("report %d (%s at %s): Ready since %s, want %s", i, tc.status, tc.at, got, tc.want)
		}
	}
}

// A node gone past the eviction timeout keeps its DaemonSet pod and a pod
// whose manifest names the node: they could only be made again on that
// node, so evicting them would make and delete them on every pass.
func TestGoneNodeKeepsItsDaemonSetAndPinnedPods(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	for _, name := range []string{"w1", "w2"} {
		n := register(t, c, name)
		n.Labels["role"] = "worker"
		if _, err := c.Register(context.Background(), &api.NodeRegistration{Node: *n}); err != nil {
			t.Fatal(err)
		}
	}
	pinned := "apiVersion: v1\nkind: Pod\nmetadata: {name: pinned}\nspec:\n  nodeName: w1\n  containers:\n  - {name: c, image: pinned:v1}\n"
	if _, err := a.Apply(revision("c1", map[string]string{"ds.yaml": daemonSet, "pinned.yaml": pinned}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	uids := func() map[string]string {
		out := map[string]string{}
		for _, p := range podsOf(t, st) {
			out[p.NodeName+" "+p.OwnerKey] = string(p.UID)
		}
		return out
	}
	before := uids()
	if len(before) != 3 {
		t.Fatalf("pods %v, want the DaemonSet's on w1 and w2 and the pinned one", before)
	}
	// w1 stops renewing its lease; w2 goes on.
	for range 12 {
		clk.t = clk.t.Add(10 * time.Second)
		if err := c.RenewLease(context.Background(), "w2"); err != nil {
			t.Fatal(err)
		}
		settle(t, c)
	}
	if after := uids(); !cmp.Equal(before, after) {
		t.Errorf("pods changed after w1 went: %s", cmp.Diff(before, after))
	}
	all, _ := st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
	if len(all) != 3 {
		t.Errorf("%d pod rows (terminating ones included), want 3: no pod made and deleted again", len(all))
	}
}

// A Job its CronJob made is deleted ttlSecondsAfterFinished after it
// finished, with its pods; a Job from Git keeps its object (Git has it) and
// loses its pods.
func TestJobTTLAfterFinished(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	clk.t = time.Date(2026, 1, 1, 10, 1, 0, 0, time.UTC)
	cj := strings.Replace(cronJob, "    spec:\n      template:", "    spec:\n      ttlSecondsAfterFinished: 30\n      template:", 1)
	gitJob := "apiVersion: batch/v1\nkind: Job\nmetadata: {name: once}\nspec:\n  ttlSecondsAfterFinished: 30\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - {name: c, image: once:v1}\n"
	if _, err := a.Apply(revision("c1", map[string]string{"cj.yaml": cj, "job.yaml": gitJob}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	clk.t = time.Date(2026, 1, 1, 10, 5, 1, 0, time.UTC)
	settle(t, c)
	jobs := func() []string {
		objs, _ := st.Snapshot().Objects(memdb.NewWatchSet(), store.ObjectQuery{Kind: "Job"})
		var out []string
		for _, o := range objs {
			out = append(out, o.Name)
		}
		return out
	}
	if j := jobs(); len(j) != 2 {
		t.Fatalf("jobs %v, want the CronJob's and once", j)
	}
	for _, p := range podsOf(t, st) {
		setPhase(t, st, p.Key, corev1.PodSucceeded)
	}
	settle(t, c)
	if j, n := jobs(), len(podsOf(t, st)); len(j) != 2 || n != 2 {
		t.Fatalf("right after finishing: jobs %v, %d pods; want both kept", j, n)
	}
	clk.t = clk.t.Add(31 * time.Second)
	settle(t, c)
	if j := jobs(); len(j) != 1 || j[0] != "once" {
		t.Errorf("30 s after finishing: jobs %v, want only once (from Git)", j)
	}
	if n := len(podsOf(t, st)); n != 0 {
		t.Errorf("%d pods left 30 s after the Jobs finished", n)
	}
}

// A report that says what the node said before writes nothing: each write
// wakes whoever watches the pods, the node among them, which would publish
// its pods and report them again (a loop that kept two cores busy).
func TestReportPodUnchangedWritesNothing(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	if _, err := a.Apply(revision("c1", map[string]string{"web.yaml": deploy3}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	ps := podsOf(t, st)
	if len(ps) != 3 || ps[0].NodeName != "n1" {
		t.Fatalf("%d pods, first on node %q; want 3 on n1", len(ps), ps[0].NodeName)
	}
	report := func(ready corev1.ConditionStatus) uint64 {
		t.Helper()
		p := ps[0].Object().DeepCopy()
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: "10.244.0.5",
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: ready}}}
		if err := c.ReportPod(context.Background(), "n1", p); err != nil {
			t.Fatal(err)
		}
		return st.Snapshot().Index(memdb.NewWatchSet(), store.TablePods)
	}
	first := report(corev1.ConditionTrue)
	if again := report(corev1.ConditionTrue); again != first {
		t.Errorf("pods index %d after the same report again, want %d (unchanged)", again, first)
	}
	if changed := report(corev1.ConditionFalse); changed <= first {
		t.Errorf("pods index %d after a changed report, want above %d", changed, first)
	}
}

// Reports and lease renewals that arrive while another write is going on
// are written together, in one transaction up to maxWriteBatch: every one
// answered, a refused one without harm to the others.
func TestReportPodsTogether(t *testing.T) {
	for _, tc := range []struct{ batch, writes int }{{maxWriteBatch, 1}, {8, 3}} {
		t.Run(fmt.Sprintf("batch=%d", tc.batch), func(t *testing.T) { testReportPodsTogether(t, tc.batch, tc.writes) })
	}
}

func testReportPodsTogether(t *testing.T, batch, writes int) {
	c, a, st, clk := clusterFixture(t)
	c.writes.max = batch
	register(t, c, "n1")
	if _, err := a.Apply(revision("c1", map[string]string{"web.yaml": strings.Replace(deploy3, "replicas: 3", "replicas: 20", 1)}), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	ps := podsOf(t, st)
	if len(ps) != 20 {
		t.Fatalf("%d pods, want 20", len(ps))
	}
	before := st.Snapshot().Index(memdb.NewWatchSet(), store.TablePods)

	c.writes.token <- struct{}{} // as if a batch were being written
	errs := make([]error, len(ps)+1)
	var wg sync.WaitGroup
	for i, p := range ps {
		p := p.Object().DeepCopy()
		p.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("10.244.0.%d", i+2)}
		wg.Go(func() { errs[i] = c.ReportPod(context.Background(), "n1", p) })
	}
	stranger := ps[0].Object().DeepCopy()
	stranger.UID = "not-the-one"
	wg.Go(func() { errs[len(ps)] = c.ReportPod(context.Background(), "n1", stranger) })
	var renewed, unknown error
	wg.Go(func() { renewed = c.RenewLease(context.Background(), "n1") })
	wg.Go(func() { unknown = c.RenewLease(context.Background(), "n9") })
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		c.writes.mu.Lock()
		n := len(c.writes.queue)
		c.writes.mu.Unlock()
		if n == len(ps)+3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", n, len(ps)+3)
		}
	}
	<-c.writes.token
	wg.Wait()

	if renewed != nil {
		t.Errorf("lease renewal of n1: %v", renewed)
	}
	if !errors.Is(unknown, store.ErrNotFound) {
		t.Errorf("lease renewal of a node that never registered: %v, want not found", unknown)
	}

	for i, err := range errs[:len(ps)] {
		if err != nil {
			t.Errorf("report of %s: %v", ps[i].Key, err)
		}
	}
	if err := errs[len(ps)]; err == nil || !strings.Contains(err.Error(), "not-the-one") {
		t.Errorf("report of a pod with another UID: %v, want it refused", err)
	}
	written := map[uint64]int{} // pods by the index of the write that wrote them
	for _, p := range podsOf(t, st) {
		if p.Phase != string(corev1.PodRunning) || p.PodIP == "" {
			t.Errorf("pod %s: phase %s, IP %q after its report", p.Key, p.Phase, p.PodIP)
		}
		written[p.ModifyIndex]++
	}
	if len(written) != writes {
		t.Errorf("the %d reports were written by %d transactions (pods by index: %v), want %d", len(ps), len(written), written, writes)
	}
	for idx := range written {
		if idx <= before {
			t.Errorf("pods written at index %d, not after %d", idx, before)
		}
		if leases := st.Snapshot().Index(memdb.NewWatchSet(), store.TableLeases); writes == 1 && leases != idx {
			t.Errorf("the lease renewal was written at index %d, the reports at %d: want one transaction", leases, idx)
		}
	}
	if got := eventsOf(t, st, "Node/n1", "UnknownPod"); len(got) != 1 {
		t.Errorf("UnknownPod events of n1: %q, want one", got)
	}
}
