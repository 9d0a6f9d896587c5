package apiserver

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/store"
)

// An agent gets the Secrets its node's pods use and the Ingresses'
// certificates, with their values, and no other Secret; a blocking query
// answers when a pod using another Secret is bound to the node. Anyone
// else gets no values.
func TestAgentGetsItsNodesSecrets(t *testing.T) {
	st, err := store.New()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(st, Options{AgentToken: "tok", Agents: nil}))
	t.Cleanup(srv.Close)
	anon, _ := client.New(srv.URL)
	agent := anon.WithToken("tok")
	secret := func(name string) *store.Object {
		return &store.Object{Key: "Secret/default/" + name, Kind: "Secret", Namespace: "default", Name: name, Obj: &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Data:       map[string][]byte{"v": []byte("value-of-" + name)},
		}}
	}
	pod := func(name, node string, spec corev1.PodSpec) *store.Pod {
		p := store.NewPod(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)}, Spec: spec})
		p.NodeName = node
		return p
	}
	ing := &networkingv1.Ingress{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: networkingv1.IngressSpec{TLS: []networkingv1.IngressTLS{{SecretName: "tls"}}}}
	write(t, st, func(txn *store.Txn) error {
		for _, n := range []string{"vol", "pull", "tls", "other", "later"} {
			if err := txn.UpsertObject(secret(n)); err != nil {
				return err
			}
		}
		if err := txn.UpsertObject(&store.Object{Key: "Ingress/default/web", Kind: "Ingress", Namespace: "default", Name: "web", Obj: ing}); err != nil {
			return err
		}
		if err := txn.UpsertPod(pod("a", "n1", corev1.PodSpec{Volumes: []corev1.Volume{{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "vol"}}}}})); err != nil {
			return err
		}
		if err := txn.UpsertPod(pod("b", "n1", corev1.PodSpec{ImagePullSecrets: []corev1.LocalObjectReference{{Name: "pull"}}})); err != nil {
			return err
		}
		return txn.UpsertPod(pod("c", "n2", corev1.PodSpec{Containers: []corev1.Container{{Name: "c", EnvFrom: []corev1.EnvFromSource{{SecretRef: &corev1.SecretEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: "other"}}}}}}}))
	})
	ctx := context.Background()
	names := func(l *client.Query, c *client.Client) ([]string, uint64, string) {
		list, err := c.Objects(ctx, *l)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		var bodies strings.Builder
		for _, it := range list.Items {
			out = append(out, it.Name)
			bodies.Write(it.Object)
		}
		slices.Sort(out)
		return out, list.Index, bodies.String()
	}
	got, idx, body := names(&client.Query{Kind: "Secret", Node: "n1"}, agent)
	if !slices.Equal(got, []string{"pull", "tls", "vol"}) || !strings.Contains(body, "dmFsdWUtb2Ytdm9s") {
		t.Errorf("node n1 gets %v (values: %v), want pull, tls and vol with their values", got, strings.Contains(body, "dmFsdWUtb2Ytdm9s"))
	}
	if got, _, _ := names(&client.Query{Kind: "Secret", Node: "n2"}, agent); !slices.Equal(got, []string{"other", "tls"}) {
		t.Errorf("node n2 gets %v, want other and tls", got)
	}
	if _, err := agent.Objects(ctx, client.Query{Kind: "Secret"}); err == nil || !strings.Contains(err.Error(), "node") {
		t.Errorf("an agent's Secrets without its node: %v, want refused", err)
	}
	if _, _, body := names(&client.Query{Kind: "Secret"}, anon); strings.Contains(body, "dmFsdWUt") {
		t.Error("values served without the agents' token")
	}
	if o, err := agent.Object(ctx, "Secret", "default", "vol"); err != nil || strings.Contains(string(o.Object), "dmFsdWUt") {
		t.Errorf("one Secret by name gives its value to an agent: %v", err)
	}

	// A pod using "later" is bound to n1: the blocking query answers.
	done := make(chan []string, 1)
	go func() {
		got, _, _ := names(&client.Query{Kind: "Secret", Node: "n1", Index: idx, Wait: time.Minute}, agent)
		done <- got
	}()
	time.Sleep(50 * time.Millisecond)
	write(t, st, func(txn *store.Txn) error {
		return txn.UpsertPod(pod("d", "n1", corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Env: []corev1.EnvVar{{Name: "X", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "later"}, Key: "v"}}}}}}}))
	})
	select {
	case got := <-done:
		if !slices.Contains(got, "later") {
			t.Errorf("after a pod using it was bound: %v", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal(errors.New("the blocking query did not answer when a pod using a new Secret was bound"))
	}
}
