package apiserver

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/store"
)

func TestServicesWithEndpoints(t *testing.T) {
	st, c := setup(t)
	svc := &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"}, ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.20", Selector: map[string]string{"app": "web"}, Ports: []corev1.ServicePort{{Port: 80}}}}
	write(t, st, func(txn *store.Txn) error {
		return txn.UpsertObject(&store.Object{Key: "Service/default/web", Kind: "Service", Namespace: "default", Name: "web", Obj: svc})
	})
	ctx := context.Background()
	list, err := c.Services(ctx, client.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Service.Spec.ClusterIP != "10.96.0.20" || len(list.Items[0].Slices) != 0 {
		t.Fatalf("services: %+v", list.Items)
	}
	// A blocking query wakes up when the endpoints change.
	got := make(chan []string, 1)
	go func() {
		l, err := c.Services(ctx, client.Query{Index: list.Index, Wait: 10 * time.Second})
		if err != nil {
			got <- []string{err.Error()}
			return
		}
		var ips []string
		for _, s := range l.Items[0].Slices {
			for _, e := range s.Endpoints {
				ips = append(ips, e.Addresses...)
			}
		}
		got <- ips
	}()
	time.Sleep(50 * time.Millisecond)
	port := int32(8080)
	write(t, st, func(txn *store.Txn) error {
		return txn.UpsertEndpoints(&store.Endpoints{Key: "default/web", Namespace: "default", Name: "web", Slices: []*discoveryv1.EndpointSlice{{
			ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.244.0.5"}}},
			Ports:       []discoveryv1.EndpointPort{{Port: &port}},
		}}})
	})
	select {
	case ips := <-got:
		if diff := cmp.Diff([]string{"10.244.0.5"}, ips); diff != "" {
			t.Errorf("endpoints after the change (-want +got):\n%s", diff)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query did not wake up")
	}
	slices, err := c.EndpointSlices(ctx, client.Query{Namespace: "default"})
	if err != nil || len(slices.Items) != 1 || slices.Items[0].Name != "web-abc" {
		t.Fatalf("endpointslices: %v %+v", err, slices)
	}
	if other, err := c.EndpointSlices(ctx, client.Query{Namespace: "other"}); err != nil || len(other.Items) != 0 {
		t.Errorf("endpointslices of another namespace: %v %+v", err, other)
	}
}

func TestStatusNamesRolledBackDeployments(t *testing.T) {
	st, c := setup(t)
	d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}}
	failed := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Name: "web-bbb", Namespace: "default", Annotations: map[string]string{
		api.AnnotationRolledBackAt: "h2", api.AnnotationRolledBackTo: "web-aaa", api.AnnotationRolledBackReason: "no progress"}}}
	write(t, st, func(txn *store.Txn) error {
		if err := txn.UpsertObject(&store.Object{Key: "Deployment/default/web", Kind: "Deployment", Namespace: "default", Name: "web", Obj: d, Hash: "h2"}); err != nil {
			return err
		}
		return txn.UpsertObject(&store.Object{Key: "ReplicaSet/default/web-bbb", Kind: "ReplicaSet", Namespace: "default", Name: "web-bbb", Obj: failed, OwnerKey: "Deployment/default/web"})
	})
	s, err := c.Status(context.Background(), client.Query{})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.RolledBack{{Object: "Deployment/default/web", Running: "web-aaa", Failed: "web-bbb", Reason: "no progress"}}
	if diff := cmp.Diff(want, s.RolledBack); diff != "" {
		t.Errorf("rolled back (-want +got):\n%s", diff)
	}
	// A new commit (another hash): no longer rolled back.
	write(t, st, func(txn *store.Txn) error {
		return txn.UpsertObject(&store.Object{Key: "Deployment/default/web", Kind: "Deployment", Namespace: "default", Name: "web", Obj: d, Hash: "h3"})
	})
	if s, _ := c.Status(context.Background(), client.Query{}); len(s.RolledBack) != 0 {
		t.Errorf("after a new commit: %+v", s.RolledBack)
	}
}
