package apiserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/store"
)

// registrar is the controller's side of agents for tests of the API's
// authentication: it takes every registration and records which node
// renewed its lease and reported pods.
type registrar struct{ seen *sync.Map }

func (r registrar) Register(_ context.Context, reg *api.NodeRegistration) (*corev1.Node, error) {
	return &reg.Node, nil
}

func (r registrar) note(what string) error {
	if r.seen != nil {
		r.seen.Store(what, true)
	}
	return nil
}
func (r registrar) RenewLease(_ context.Context, node string) error { return r.note("lease " + node) }
func (r registrar) ServicesSynced(node string, _ uint64) error      { return r.note("services " + node) }
func (r registrar) ReportPod(_ context.Context, node string, p *corev1.Pod) error {
	return r.note("report " + node + " " + p.Name)
}
func (r registrar) ForgetPod(_ context.Context, node, _, name, _ string) error {
	return r.note("forget " + node + " " + name)
}

// TestNodeCredentials: the join token registers a node and gets it a
// credential of its own; the node acts for itself with it, and neither the
// join token nor another node's credential acts for it. A controller that
// restarted (a new Server) knows no credential: the client registers again
// and goes on.
func TestNodeCredentials(t *testing.T) {
	st, err := store.New()
	if err != nil {
		t.Fatal(err)
	}
	seen := &sync.Map{}
	handler := New(st, Options{AgentToken: "join", Agents: registrar{seen}})
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		h := handler
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	anon, _ := client.New(srv.URL)
	ctx := context.Background()
	reg := func(name string) *api.NodeRegistration {
		return &api.NodeRegistration{Node: corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "p"}}

	if _, err := anon.WithToken("wrong").Register(ctx, reg("n1")); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("register with a wrong token: %v, want refused", err)
	}
	n1 := anon.WithToken("join")
	if _, err := n1.Register(ctx, reg("n1")); err != nil {
		t.Fatal(err)
	}
	for what, call := range map[string]func() error{
		"lease n1":      func() error { return n1.RenewLease(ctx, "n1") },
		"services n1":   func() error { return n1.ServicesSynced(ctx, "n1", 7) },
		"report n1 p":   func() error { return n1.ReportPod(ctx, "n1", pod) },
		"forget n1 p":   func() error { return n1.ForgetPod(ctx, "n1", "default", "p", "uid") },
		"secrets of n1": func() error { _, err := n1.Objects(ctx, client.Query{Kind: "Secret", Node: "n1"}); return err },
	} {
		if err := call(); err != nil {
			t.Errorf("%s with its credential: %v", what, err)
		}
	}
	// n1's client acts for n2, which it never registered: refused, and
	// nothing reached the controller.
	for what, call := range map[string]func() error{
		"lease n2":      func() error { return n1.RenewLease(ctx, "n2") },
		"services n2":   func() error { return n1.ServicesSynced(ctx, "n2", 7) },
		"report n2 p":   func() error { return n1.ReportPod(ctx, "n2", pod) },
		"forget n2 p":   func() error { return n1.ForgetPod(ctx, "n2", "default", "p", "uid") },
		"secrets of n2": func() error { _, err := n1.Objects(ctx, client.Query{Kind: "Secret", Node: "n2"}); return err },
	} {
		if err := call(); !errors.Is(err, client.ErrUnauthorized) {
			t.Errorf("%s with the join token or n1's credential: %v, want refused", what, err)
		}
		if _, ok := seen.Load(what); ok {
			t.Errorf("%s reached the controller", what)
		}
	}
	// A registered node's credential does not act for another registered
	// node: n2's own client gets one, n1's is refused for n2.
	n2 := anon.WithToken("join")
	if _, err := n2.Register(ctx, reg("n2")); err != nil {
		t.Fatal(err)
	}
	n1cred, _ := n1.NodeCredential("n1")
	req, _ := http.NewRequest(http.MethodPut, srv.URL+"/v1/nodes/n2/lease", strings.NewReader("{}"))
	req.Header.Set(api.AgentTokenHeader, "Bearer "+n1cred)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("n2's lease with n1's credential: %v %v, want 401", resp.StatusCode, err)
	}
	if err := n2.RenewLease(ctx, "n2"); err != nil {
		t.Errorf("n2's lease with its credential: %v", err)
	}

	// The controller restarts: it knows no credential; the client
	// registers n1 again with the join token and the report goes through.
	mu.Lock()
	handler = New(st, Options{AgentToken: "join", Agents: registrar{seen}})
	mu.Unlock()
	seen.Delete("report n1 p")
	if err := n1.ReportPod(ctx, "n1", pod); err != nil {
		t.Fatalf("report after the controller restarted: %v", err)
	}
	if _, ok := seen.Load("report n1 p"); !ok {
		t.Error("the report after the restart did not reach the controller")
	}
	if cred, _ := n1.NodeCredential("n1"); cred == n1cred {
		t.Error("n1 kept the credential the restarted controller does not know")
	}
}
