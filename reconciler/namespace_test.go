package reconciler

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"

	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

const shopNamespace = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n"

// inShop is deploy3 in the namespace shop.
var inShop = strings.Replace(deploy3, "  name: web\n", "  name: web\n  namespace: shop\n", 1)

// TestUndeclaredNamespaceRejectsRevision: an object in a namespace that is
// neither declared in the revision nor default is an error naming its file,
// line, object and field, and the revision changes nothing.
func TestUndeclaredNamespaceRejectsRevision(t *testing.T) {
	cmShop := strings.Replace(cmA, "  name: a\n", "  name: a\n  namespace: shop\n", 1)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []manifest.Issue // nil: applied
	}{
		{name: "default", files: map[string]string{"web.yaml": deploy3}},
		{name: "declared", files: map[string]string{"ns.yaml": shopNamespace, "web.yaml": inShop}},
		{name: "undeclared", files: map[string]string{"web.yaml": inShop, "cm.yaml": cmShop},
			want: []manifest.Issue{
				{Severity: manifest.SeverityError, File: "cm.yaml", Line: 5, Object: "ConfigMap/shop/a", Field: "metadata.namespace",
					Message: `namespace "shop" is not declared: add a Namespace object named "shop" to the revision`},
				{Severity: manifest.SeverityError, File: "web.yaml", Line: 5, Object: "Deployment/shop/web", Field: "metadata.namespace",
					Message: `namespace "shop" is not declared: add a Namespace object named "shop" to the revision`},
			}},
		{name: "declared in another namespace's name", files: map[string]string{"ns.yaml": strings.Replace(shopNamespace, "shop", "shop2", 1), "web.yaml": inShop},
			want: []manifest.Issue{{Severity: manifest.SeverityError, File: "web.yaml", Line: 5, Object: "Deployment/shop/web", Field: "metadata.namespace",
				Message: `namespace "shop" is not declared: add a Namespace object named "shop" to the revision`}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, st := newApplier(t)
			if _, err := a.Apply(revision("good", map[string]string{"cm.yaml": cmA}), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
				t.Fatal(err)
			}
			before := objectState(t, st)
			rec, err := a.Apply(revision("c1", tc.files), time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
			if err != nil {
				t.Fatal(err)
			}
			if tc.want == nil {
				if rec.Status != store.RevisionApplied || len(rec.Errors) != 0 {
					t.Fatalf("revision %s: %v", rec.Status, rec.Errors)
				}
				return
			}
			if rec.Status != store.RevisionFailed {
				t.Errorf("revision %s, want %s", rec.Status, store.RevisionFailed)
			}
			if diff := cmp.Diff(tc.want, rec.Errors); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if !strings.HasPrefix(rec.Errors[len(rec.Errors)-1].String(), "web.yaml:5: Deployment/shop/web: metadata.namespace: ") {
				t.Errorf("error reads %q", rec.Errors[len(rec.Errors)-1])
			}
			if diff := cmp.Diff(before, objectState(t, st)); diff != "" {
				t.Errorf("a rejected revision changed objects (-before +after):\n%s", diff)
			}
		})
	}
}

// TestNamespaceRemovedFromGit: a Namespace removed from Git with its
// objects takes them with it; a Deployment's ReplicaSet goes and its Ready
// pods terminate gracefully (terminating first, gone once the nodes have
// programmed it or terminationWait passed). Removing the Namespace but
// keeping its objects is an error that changes nothing.
func TestNamespaceRemovedFromGit(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	// n1 programs services (it has reported an index): terminating pods
	// wait for it.
	if err := c.ServicesSynced("n1", 1); err != nil {
		t.Fatal(err)
	}
	svc := strings.Replace(svcYAML("web", "  selector: {app: web}\n  ports:\n  - {port: 80}\n"), "  name: web\n", "  name: web\n  namespace: shop\n", 1)
	files := map[string]string{"ns.yaml": shopNamespace, "web.yaml": inShop, "svc.yaml": svc, "cm.yaml": cmA}
	if _, err := a.Apply(revision("c1", files), clk.t); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		settle(t, c)
		reportReady(t, c, st, clk.t)
	}
	if n := len(podsOf(t, st)); n != 3 {
		t.Fatalf("%d pods in shop, want 3", n)
	}
	keys := func(kind string) []string {
		objs, err := st.Snapshot().Objects(memdb.NewWatchSet(), store.ObjectQuery{Kind: kind})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, o := range objs {
			out = append(out, o.Key)
		}
		return out
	}
	if rss := keys("ReplicaSet"); len(rss) != 1 || !strings.HasPrefix(rss[0], "ReplicaSet/shop/web-") {
		t.Fatalf("ReplicaSets %v", rss)
	}

	// The Namespace alone leaves Git: its objects would be in an undeclared
	// namespace, so the commit is rejected and everything stays.
	alone := map[string]string{"web.yaml": inShop, "svc.yaml": svc, "cm.yaml": cmA}
	rec, err := a.Apply(revision("c2", alone), clk.t)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Status != store.RevisionFailed || len(rec.Errors) != 2 {
		t.Errorf("the Namespace removed alone: %s %v, want two errors", rec.Status, rec.Errors)
	}
	settle(t, c)
	if n, ns := len(podsOf(t, st)), keys("Namespace"); n != 3 || len(ns) != 1 {
		t.Fatalf("after a rejected commit: %d pods, namespaces %v", n, ns)
	}

	// The Namespace leaves with its objects.
	if _, err := a.Apply(revision("c3", map[string]string{"cm.yaml": cmA}), clk.t); err != nil {
		t.Fatal(err)
	}
	if err := c.reconcileOnce(memdb.NewWatchSet()); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"Namespace", "Deployment", "Service", "ReplicaSet"} {
		if got := keys(kind); len(got) != 0 {
			t.Errorf("%s objects left: %v", kind, got)
		}
	}
	if got := keys("ConfigMap"); !cmp.Equal(got, []string{"ConfigMap/default/a"}) {
		t.Errorf("config maps %v, want only default/a", got)
	}
	// The pods were Ready: they terminate first, and stay so while n1 has
	// not programmed their removal.
	if err := c.reconcileOnce(memdb.NewWatchSet()); err != nil {
		t.Fatal(err)
	}
	got := allPods(t, st)
	if len(got) != 3 {
		t.Fatalf("pods right after the namespace went: %v, want 3 terminating", got)
	}
	for _, p := range got {
		if !strings.HasSuffix(p, " (terminating)") {
			t.Errorf("pod %s went without terminating first", p)
		}
	}
	clk.t = clk.t.Add(terminationWait)
	settle(t, c)
	if got := allPods(t, st); len(got) != 0 {
		t.Errorf("pods left after terminationWait: %v", got)
	}
}
