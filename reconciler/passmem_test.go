package reconciler

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/store"
)

func TestGroupByOwner(t *testing.T) {
	pod := func(key, owner string) *store.Pod { return &store.Pod{Key: key, OwnerKey: owner} }
	a1, b1, a2, bare, a3 := pod("ns/a1", "RS/a"), pod("ns/b1", "RS/b"), pod("ns/a2", "RS/a"), pod("ns/bare", ""), pod("ns/a3", "RS/a")
	all := func(*store.Pod) bool { return true }
	for _, tc := range []struct {
		name string
		pods []*store.Pod
		keep func(*store.Pod) bool
		want map[string][]string
	}{
		{"none", nil, all, map[string][]string{}},
		{"in the order given", []*store.Pod{a1, b1, a2, bare, a3}, all,
			map[string][]string{"RS/a": {"ns/a1", "ns/a2", "ns/a3"}, "RS/b": {"ns/b1"}, "": {"ns/bare"}}},
		{"kept only", []*store.Pod{a1, b1, a2, bare, a3}, func(p *store.Pod) bool { return p != a2 && p != b1 },
			map[string][]string{"RS/a": {"ns/a1", "ns/a3"}, "": {"ns/bare"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := groupByOwner(tc.pods, tc.keep)
			keys := map[string][]string{}
			for owner, ps := range got {
				if cap(ps) != len(ps) {
					t.Errorf("group %q has room past its end (len %d, cap %d): an append would write into the next", owner, len(ps), cap(ps))
				}
				for _, p := range ps {
					keys[owner] = append(keys[owner], p.Key)
				}
			}
			if d := cmp.Diff(tc.want, keys); d != "" {
				t.Errorf("groups (-want +got):\n%s", d)
			}
		})
	}
	// Appending to one group leaves its neighbours in the array alone.
	got := groupByOwner([]*store.Pod{a1, b1, a2}, all)
	_ = append(got["RS/a"], bare)
	_ = append(got["RS/b"], bare)
	if got["RS/a"][1] != a2 || got["RS/b"][0] != b1 {
		t.Errorf("an append to a group changed another: %v %v", got["RS/a"], got["RS/b"])
	}
}

func TestTemplateHashMemo(t *testing.T) {
	d := func(image string) *appsv1.Deployment {
		x := &appsv1.Deployment{}
		x.Spec.Template.Spec.Containers = []corev1.Container{{Name: "c", Image: image}}
		return x
	}
	var m hashMemo
	v1, v2 := d("app:v1"), d("app:v2")
	h1, h2 := m.get(v1), m.get(v2)
	if h1 != templateHash(v1) || h2 != templateHash(v2) || h1 == h2 {
		t.Fatalf("hashes %q %q, want %q %q", h1, h2, templateHash(v1), templateHash(v2))
	}
	if same := d("app:v1"); m.get(same) != h1 {
		t.Errorf("an equal template in another object hashes to %q, want %q", m.get(same), h1)
	}
	// What a pass asks for stays; what two passes in a row did not ask for goes.
	m.rotate()
	if m.get(v1) != h1 {
		t.Errorf("after a rotation v1 hashes to %q, want %q", m.get(v1), h1)
	}
	m.rotate()
	if _, ok := m.prev[v2]; ok {
		t.Error("v2, asked for by neither of the last two passes, is still held")
	}
	if _, ok := m.prev[v1]; !ok {
		t.Error("v1, asked for by the last pass, is no longer held")
	}
}
