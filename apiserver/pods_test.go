package apiserver

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/store"
)

// TestParkedPodsServed: a parked pod is served with the annotations that
// say so, to people; a node's agent is not shown them, and the template's
// annotations, shared by the pods, are not changed.
func TestParkedPodsServed(t *testing.T) {
	st, c := setup(t)
	shared := map[string]string{"team": "web"}
	until := time.Date(2026, 1, 1, 0, 1, 0, 0, time.UTC)
	write(t, st, func(txn *store.Txn) error {
		for _, name := range []string{"web-a", "web-b"} {
			p := store.NewPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Annotations: shared}, Spec: corev1.PodSpec{NodeName: "n1"}})
			if err := txn.UpsertPod(p); err != nil {
				return err
			}
		}
		return txn.ParkPod(&store.ParkedPod{Key: "default/web-a", Until: until, Deployment: "Deployment/default/web"})
	})
	ctx := context.Background()
	parked := func(p *corev1.Pod) string {
		return p.Annotations[api.AnnotationParkedUntil] + " " + p.Annotations[api.AnnotationParkedBy]
	}
	want := "2026-01-01T00:01:00Z Deployment/default/web"
	l, err := c.Pods(ctx, client.PodQuery{Namespace: "default"})
	if err != nil || len(l.Items) != 2 {
		t.Fatalf("pods: %v, %v", l, err)
	}
	if got := parked(&l.Items[0]); got != want {
		t.Errorf("listed web-a: %q, want %q", got, want)
	}
	if got := parked(&l.Items[1]); got != " " || l.Items[1].Annotations["team"] != "web" {
		t.Errorf("listed web-b, not parked: annotations %v", l.Items[1].Annotations)
	}
	p, err := c.Pod(ctx, "default", "web-a")
	if err != nil {
		t.Fatal(err)
	}
	if got := parked(p); got != want || p.Annotations["team"] != "web" {
		t.Errorf("web-a: annotations %v", p.Annotations)
	}
	l, err = c.Pods(ctx, client.PodQuery{Node: "n1"})
	if err != nil || len(l.Items) != 2 {
		t.Fatalf("pods of n1: %v, %v", l, err)
	}
	if got := parked(&l.Items[0]); got != " " {
		t.Errorf("an agent is shown web-a parked: %q", got)
	}
	if len(shared) != 1 {
		t.Errorf("the shared template's annotations were changed: %v", shared)
	}
}
