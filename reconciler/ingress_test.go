package reconciler

import (
	"strings"
	"testing"

	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/keelson/keelson/apiserver/api"

	"github.com/keelson/keelson/store"
)

const ingressA = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: a}
spec:
  tls:
  - {hosts: [shop.example.com], secretName: missing-cert}
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
      - {path: /api, pathType: Prefix, backend: {service: {name: nope, port: {number: 80}}}}
`

const ingressB = `apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: b}
spec:
  rules:
  - host: shop.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {name: http}}}}
`

func TestIngressProblemsAreWarnings(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	files := map[string]string{
		"svc.yaml": svcYAML("web", "  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n"),
		"a.yaml":   ingressA,
	}
	rec, err := a.Apply(revision("c1", files), clk.t)
	if err != nil || rec.Status != store.RevisionApplied {
		t.Fatalf("apply: %v %s %v", err, rec.Status, rec.Errors)
	}
	var got []string
	for _, w := range rec.Warnings {
		got = append(got, w.String())
	}
	all := strings.Join(got, "\n")
	for _, want := range []string{
		"a.yaml:1: Ingress/default/a: spec.rules[0].http.paths[1].backend.service.name:",
		"a.yaml:1: Ingress/default/a: spec.tls[0].secretName:",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("warnings lack %q:\n%s", want, all)
		}
	}
	// A second Ingress claiming the same host and path: the older keeps it.
	files["b.yaml"] = ingressB
	rec, err = a.Apply(revision("c2", files), clk.t)
	if err != nil || rec.Status != store.RevisionApplied {
		t.Fatalf("apply c2: %v %s %v", err, rec.Status, rec.Errors)
	}
	found := false
	for _, w := range rec.Warnings {
		if w.Object == "Ingress/default/b" && strings.Contains(w.Message, "default/a") {
			found = true
		}
	}
	if !found {
		t.Errorf("no conflict warning on the newer Ingress b: %v", rec.Warnings)
	}
	evs, _ := st.Snapshot().Events(memdb.NewWatchSet(), "Ingress/default/b")
	if len(evs) == 0 {
		t.Errorf("no event on Ingress b")
	}

	// Status: the addresses of the nodes that serve it.
	n := register(t, c, "n1")
	n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "192.168.4.10"}}
	if _, err := c.Register(t.Context(), &api.NodeRegistration{Node: *n}); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	o, err := st.Snapshot().Object(memdb.NewWatchSet(), "Ingress/default/a")
	if err != nil {
		t.Fatal(err)
	}
	s, ok := o.Status.(*networkingv1.IngressStatus)
	if !ok || len(s.LoadBalancer.Ingress) != 1 || s.LoadBalancer.Ingress[0].IP != "192.168.4.10" {
		t.Errorf("Ingress status %+v, want the node's address", o.Status)
	}
}
