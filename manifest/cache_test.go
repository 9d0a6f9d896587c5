package manifest

import (
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// countingFiles wraps each File's Read to count calls per path.
func countingFiles(files []File, counts map[string]*atomic.Int32) []File {
	out := make([]File, len(files))
	for i, f := range files {
		c := counts[f.Path]
		if c == nil {
			c = &atomic.Int32{}
			counts[f.Path] = c
		}
		read := f.Read
		f.Read = func() ([]byte, error) { c.Add(1); return read() }
		out[i] = f
	}
	return out
}

func reads(counts map[string]*atomic.Int32) map[string]int32 {
	m := map[string]int32{}
	for p, c := range counts {
		if n := c.Swap(0); n > 0 {
			m[p] = n
		}
	}
	return m
}

func TestCacheDecodesOnlyChangedFiles(t *testing.T) {
	repo := map[string]string{
		"a.yaml":                  deployment,
		"b.yaml":                  service,
		"ns.yaml":                 "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
		"c.yaml":                  "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: shop\n",
		"kust/kustomization.yaml": "namePrefix: k-\nresources:\n- cm.yaml\n",
		"kust/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
	}
	counts := map[string]*atomic.Int32{}
	l := NewLoader(Options{})
	r1 := l.Load(countingFiles(memFiles(repo), counts))
	if !r1.OK() {
		t.Fatalf("first load: %v", r1.Errors)
	}
	if got := reads(counts); len(got) != 6 {
		t.Errorf("first load read %v, want every file once", got)
	}

	// Change one plain file: only it is read again.
	repo["b.yaml"] = service + "  - port: 443\n    name: https\n"
	repo["b.yaml"] = service
	repo["a.yaml"] = deployment + "        - containerPort: 8080\n"
	r2 := l.Load(countingFiles(memFiles(repo), counts))
	if !r2.OK() {
		t.Fatalf("second load: %v", r2.Errors)
	}
	if diff := cmp.Diff(map[string]int32{"a.yaml": 1}, reads(counts)); diff != "" {
		t.Errorf("reads after changing a.yaml (-want +got):\n%s", diff)
	}

	// Cross-file checks still run on cached objects: removing the
	// Namespace makes c.yaml invalid without c.yaml changing.
	delete(repo, "ns.yaml")
	r3 := l.Load(countingFiles(memFiles(repo), counts))
	want := []string{`c.yaml:5: ConfigMap/shop/c: metadata.namespace: namespace "shop" is not declared: add a Namespace object named "shop" to the revision`}
	if diff := cmp.Diff(want, issueLines(r3)); diff != "" {
		t.Errorf("issues (-want +got):\n%s", diff)
	}
	if got := reads(counts); len(got) != 0 {
		t.Errorf("reads after removing a file: %v, want none", got)
	}

	// Changing a file of the kustomization rebuilds it.
	repo["kust/cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n"
	r4 := l.Load(countingFiles(memFiles(repo), counts))
	got := reads(counts)
	if got["kust/cm.yaml"] != 1 || len(got) != 2 {
		t.Errorf("reads after changing kust/cm.yaml: %v, want the kustomization and cm.yaml", got)
	}
	found := false
	for _, o := range r4.Objects {
		found = found || o.Key() == "ConfigMap/default/k-d"
	}
	if !found {
		t.Errorf("kustomization not rebuilt: %v", r4.Objects)
	}
}
