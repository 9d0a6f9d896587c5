package gitsync

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keelson/keelson/internal/gittest"
)

func webDeployment(image, extra string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: %s
      - name: sidecar
        image: proxy:1
%s`, image, extra)
}

func webService(port int) string {
	return fmt.Sprintf(`---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{port: %d}]
`, port)
}

// change is an ObjectChange without the commit's details but its message.
type change struct {
	Message string
	Change  ChangeKind
	Images  []string
	Error   bool
}

func changes(log *ObjectLog) []change {
	var out []change
	for _, c := range log.Changes {
		msg, _, _ := strings.Cut(c.Commit.Message, "\n")
		out = append(out, change{msg, c.Change, c.Images, c.Error != ""})
	}
	return out
}

// TestObjectHistory follows a Deployment through commits that change it,
// touch its file without changing it, leave it alone, break it and bring it
// back, and checks what a second question decodes.
func TestObjectHistory(t *testing.T) {
	g := gittest.NewRepo(t, "", "repo")
	g.CommitFiles("namespace", map[string]string{"ns.yaml": "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"})
	g.CommitFiles("add web v1", map[string]string{"apps/web.yaml": webDeployment("web:v1", "") + webService(80)})
	g.CommitFiles("service port", map[string]string{"apps/web.yaml": webDeployment("web:v1", "") + webService(8080)})
	v2 := g.CommitFiles("web v2", map[string]string{"apps/web.yaml": webDeployment("web:v2", "") + webService(8080)})
	g.CommitFiles("comment only", map[string]string{"apps/web.yaml": "# the shop's front end\n" + webDeployment("web:v2", "") + webService(8080)})
	g.CommitFiles("other file", map[string]string{"apps/db.yaml": strings.ReplaceAll(webDeployment("db:v1", ""), "web", "db")})
	v3 := g.CommitFiles("web v3", map[string]string{"apps/web.yaml": webDeployment("web:v3", "") + webService(8080)})
	g.Git("revert", "--no-edit", v3)
	g.CommitFiles("break it", map[string]string{"apps/web.yaml": webDeployment("web:v2", "  bogusField: 1\n") + webService(8080)})
	g.Git("revert", "--no-edit", "HEAD")
	g.Git("revert", "--no-edit", v2)
	head := g.Head()

	r, _ := open(t, Source{URL: g.Dir})
	mustSync(t, r, head, true)
	h := NewHistory(r)

	log, err := h.Object(t.Context(), "", "apps/web.yaml", "Deployment/shop/web", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []change{
		{`Revert "web v2"`, ChangeChanged, []string{"web:v1", "proxy:1"}, false},
		{`Revert "break it"`, ChangeChanged, []string{"web:v2", "proxy:1"}, false},
		{"break it", ChangeInvalid, nil, true},
		{`Revert "web v3"`, ChangeChanged, []string{"web:v2", "proxy:1"}, false},
		{"web v3", ChangeChanged, []string{"web:v3", "proxy:1"}, false},
		{"web v2", ChangeChanged, []string{"web:v2", "proxy:1"}, false},
		{"add web v1", ChangeAdded, []string{"web:v1", "proxy:1"}, false},
	}
	if diff := cmp.Diff(want, changes(log)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if log.Start != head || !cmp.Equal(log.Paths, []string{"apps/web.yaml"}) || log.Truncated {
		t.Errorf("Start %s Paths %q Truncated %v; want %s [apps/web.yaml] false", log.Start, log.Paths, log.Truncated, head)
	}
	if c := log.Changes[2]; !strings.Contains(c.Error, "bogusField") {
		t.Errorf("the invalid commit's error %q does not name the unknown field", c.Error)
	}
	// The first and last entries have the same desired state.
	if a, b := log.Changes[0].Hash, log.Changes[6].Hash; a == "" || a != b {
		t.Errorf("hash of the revert of v2 %q, of v1 %q: want equal", a, b)
	}

	// Asking again, with a limit, or about the Service in the same file,
	// decodes nothing.
	cached := len(h.cache)
	log, err = h.Object(t.Context(), "", "apps/web.yaml", "Deployment/shop/web", 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want[:2], changes(log)); diff != "" {
		t.Errorf("history limit 2 (-want +got):\n%s", diff)
	}
	svc, err := h.Object(t.Context(), "", "apps/web.yaml", "Service/shop/web", 0)
	if err != nil {
		t.Fatal(err)
	}
	// The broken Deployment in the same file leaves the Service alone.
	wantSvc := []change{
		{"service port", ChangeChanged, nil, false},
		{"add web v1", ChangeAdded, nil, false},
	}
	if diff := cmp.Diff(wantSvc, changes(svc)); diff != "" {
		t.Errorf("service history (-want +got):\n%s", diff)
	}
	if len(h.cache) != cached {
		t.Errorf("asking again decoded %d more file sets, want 0", len(h.cache)-cached)
	}

	if _, err := h.Object(t.Context(), "", "apps/nope.yaml", "Deployment/shop/nope", 0); err == nil {
		t.Error("history of a file not in the commit: nil error, want one")
	}
}

// TestObjectHistoryRemovedAndMoved: an object removed and added again, and
// one moved to another file (history follows the file it is in now).
func TestObjectHistoryRemovedAndMoved(t *testing.T) {
	g := gittest.NewRepo(t, "", "repo")
	ns := "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n"
	g.CommitFiles("add", map[string]string{"ns.yaml": ns, "web.yaml": webDeployment("web:v1", "")})
	g.Remove("web.yaml")
	g.Commit("remove")
	g.CommitFiles("add again", map[string]string{"web.yaml": webDeployment("web:v2", "")})
	g.Git("mv", "web.yaml", "front.yaml")
	g.Commit("move")
	head := g.CommitFiles("v3", map[string]string{"front.yaml": webDeployment("web:v3", "")})

	r, _ := open(t, Source{URL: g.Dir})
	mustSync(t, r, head, true)
	h := NewHistory(r)
	log, err := h.Object(t.Context(), "", "web.yaml", "Deployment/shop/web", 0)
	if err == nil {
		t.Errorf("history from a file the object left: %+v, want an error", log)
	}
	log, err = h.Object(t.Context(), "", "front.yaml", "Deployment/shop/web", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []change{
		{"v3", ChangeChanged, []string{"web:v3", "proxy:1"}, false},
		{"move", ChangeAdded, []string{"web:v2", "proxy:1"}, false},
	}
	if diff := cmp.Diff(want, changes(log)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}

	// In the old file's history (at the commit before the move).
	g.Git("reset", "-q", "--hard", "HEAD~2")
	r2, _ := open(t, Source{URL: g.Dir})
	mustSync(t, r2, g.Head(), true)
	log, err = NewHistory(r2).Object(t.Context(), "", "web.yaml", "Deployment/shop/web", 0)
	if err != nil {
		t.Fatal(err)
	}
	want = []change{
		{"add again", ChangeAdded, []string{"web:v2", "proxy:1"}, false},
		{"remove", ChangeRemoved, nil, false},
		{"add", ChangeAdded, []string{"web:v1", "proxy:1"}, false},
	}
	if diff := cmp.Diff(want, changes(log)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}

// TestObjectHistoryKustomize follows kustomize output: a change in the base
// outside the overlay's directory counts, a change to another app does not.
func TestObjectHistoryKustomize(t *testing.T) {
	g := gittest.NewRepo(t, "", "repo")
	overlay := func(tag string) string {
		return "namespace: shop\nresources:\n- ns.yaml\n- ../../base/web\nimages:\n- name: web\n  newTag: " + tag + "\n"
	}
	base := func(replicas int) string {
		return strings.Replace(strings.Replace(webDeployment("web", ""), "  namespace: shop\n", "", 1), "replicas: 2", fmt.Sprintf("replicas: %d", replicas), 1)
	}
	g.CommitFiles("add", map[string]string{
		"deploy/base/web/kustomization.yaml":      "resources: [deploy.yaml]\n",
		"deploy/base/web/deploy.yaml":             base(2),
		"deploy/overlays/prod/kustomization.yaml": overlay("v1"),
		"deploy/overlays/prod/ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n",
		"deploy/other/cm.yaml":                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\n",
	})
	g.CommitFiles("base replicas", map[string]string{"deploy/base/web/deploy.yaml": base(3)})
	g.CommitFiles("other app", map[string]string{"deploy/other/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: c}\n"})
	g.CommitFiles("overlay v2", map[string]string{"deploy/overlays/prod/kustomization.yaml": overlay("v2")})
	head := g.CommitFiles("overlay comment", map[string]string{"deploy/overlays/prod/kustomization.yaml": "# prod\n" + overlay("v2")})

	r, _ := open(t, Source{URL: g.Dir, Path: "deploy"})
	mustSync(t, r, head, true)
	log, err := NewHistory(r).Object(t.Context(), "", "overlays/prod/kustomization.yaml", "Deployment/shop/web", 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []change{
		{"overlay v2", ChangeChanged, []string{"web:v2", "proxy:1"}, false},
		{"base replicas", ChangeChanged, []string{"web:v1", "proxy:1"}, false},
		{"add", ChangeAdded, []string{"web:v1", "proxy:1"}, false},
	}
	if diff := cmp.Diff(want, changes(log)); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"overlays/prod", "base/web"}, log.Paths); diff != "" {
		t.Errorf("paths (-want +got):\n%s", diff)
	}
}

// TestLogPathsSurvivesResync checks that a walk over a clone that a Sync
// replaces meanwhile starts again and loses nothing.
func TestLogPathsSurvivesResync(t *testing.T) {
	g := gittest.NewRepo(t, "", "repo")
	var want []string
	for i := range 5 {
		g.CommitFiles(fmt.Sprintf("c%d", i), map[string]string{"a.yaml": fmt.Sprint(i)})
		want = append([]string{fmt.Sprintf("c%d", i)}, want...)
	}
	r, _ := open(t, Source{URL: g.Dir})
	mustSync(t, r, g.Head(), true)
	w, err := r.walkPaths("", []string{"a.yaml"}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	first, err := w.next(t.Context(), 2)
	if err != nil {
		t.Fatal(err)
	}
	g.CommitFiles("c5", map[string]string{"a.yaml": "5"})
	mustSync(t, r, g.Head(), true) // replaces the open clone
	var got []string
	for _, pc := range first {
		got = append(got, pc.Commit.Message)
	}
	for !w.done {
		batch, err := w.next(t.Context(), 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, pc := range batch {
			got = append(got, pc.Commit.Message)
			if (pc.ParentFiles == nil) != pc.Root {
				t.Errorf("%s: root %v, parent files %v", pc.Commit.Message, pc.Root, pc.ParentFiles)
			}
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("walk (-want +got):\n%s", diff)
	}
}
