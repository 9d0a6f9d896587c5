package apiserver

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

func cm(ns, name string, lbls map[string]string) *store.Object {
	o := &corev1.ConfigMap{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: lbls},
		Data:       map[string]string{"k": "v"},
	}
	return &store.Object{Key: "ConfigMap/" + ns + "/" + name, Kind: "ConfigMap", Namespace: ns, Name: name, Labels: lbls, Obj: o, File: "cm.yaml", Line: 1, Revision: "abc"}
}

func setup(t *testing.T) (*store.Store, *client.Client) {
	t.Helper()
	st, err := store.New()
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(New(st, Options{}))
	t.Cleanup(srv.Close)
	c, err := client.New(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return st, c
}

func write(t *testing.T, st *store.Store, f func(*store.Txn) error) {
	t.Helper()
	txn := st.Write()
	defer txn.Abort()
	if err := f(txn); err != nil {
		t.Fatal(err)
	}
	if err := txn.Commit(); err != nil {
		t.Fatal(err)
	}
}

func TestObjectsListAndGet(t *testing.T) {
	st, c := setup(t)
	write(t, st, func(txn *store.Txn) error {
		for _, o := range []*store.Object{cm("default", "a", map[string]string{"app": "x"}), cm("default", "b", nil), cm("other", "c", map[string]string{"app": "x"})} {
			if err := txn.UpsertObject(o); err != nil {
				return err
			}
		}
		return nil
	})
	ctx := context.Background()
	tests := []struct {
		q    client.Query
		want []string
	}{
		{client.Query{Kind: "ConfigMap"}, []string{"ConfigMap/default/a", "ConfigMap/default/b", "ConfigMap/other/c"}},
		{client.Query{Kind: "ConfigMap", Namespace: "default"}, []string{"ConfigMap/default/a", "ConfigMap/default/b"}},
		{client.Query{Selector: "app=x"}, []string{"ConfigMap/default/a", "ConfigMap/other/c"}},
		{client.Query{Kind: "Secret"}, []string{}},
	}
	for _, tt := range tests {
		list, err := c.Objects(ctx, tt.q)
		if err != nil {
			t.Fatal(err)
		}
		got := []string{}
		for _, it := range list.Items {
			got = append(got, it.Key)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%+v (-want +got):\n%s", tt.q, diff)
		}
	}
	o, err := c.Object(ctx, "ConfigMap", "other", "c")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.ReplaceAll(string(o.Object), " ", ""), `"name":"c"`) || o.File != "cm.yaml" {
		t.Errorf("object = %+v", o)
	}
	if _, err := c.Object(ctx, "ConfigMap", "other", "nope"); !errors.Is(err, client.ErrNotFound) {
		t.Errorf("missing object: err = %v, want not found", err)
	}
	if _, err := c.Objects(ctx, client.Query{Selector: "app in (("}); err == nil || !strings.Contains(err.Error(), "selector") {
		t.Errorf("bad selector: err = %v, want an error naming the selector", err)
	}
}

func TestSecretValuesNeverServed(t *testing.T) {
	st, c := setup(t)
	sec := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "default"},
		Data:       map[string][]byte{"password": []byte("hunter2-data")},
		StringData: map[string]string{"token": "hunter2-string"},
	}
	write(t, st, func(txn *store.Txn) error {
		return txn.UpsertObject(&store.Object{Key: "Secret/default/db", Kind: "Secret", Namespace: "default", Name: "db", Obj: sec})
	})
	o, err := c.Object(context.Background(), "Secret", "default", "db")
	if err != nil {
		t.Fatal(err)
	}
	body := string(o.Object)
	if strings.Contains(body, "aHVudGVy") || strings.Contains(body, "hunter2") {
		t.Errorf("secret value served: %s", body)
	}
	if !strings.Contains(body, `"password"`) || !strings.Contains(body, `"token"`) {
		t.Errorf("secret keys missing: %s", body)
	}
	if string(sec.Data["password"]) != "hunter2-data" {
		t.Error("redaction changed the stored object")
	}
}

func TestBlockingQueryOverHTTP(t *testing.T) {
	st, c := setup(t)
	write(t, st, func(txn *store.Txn) error { return txn.UpsertObject(cm("default", "a", nil)) })
	ctx := context.Background()
	list, err := c.Objects(ctx, client.Query{Kind: "ConfigMap"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan *error, 1)
	var got int
	go func() {
		l, err := c.Objects(ctx, client.Query{Kind: "ConfigMap", Index: list.Index, Wait: time.Minute})
		if err == nil {
			got = len(l.Items)
		}
		done <- &err
	}()
	write(t, st, func(txn *store.Txn) error { return txn.UpsertObject(cm("default", "b", nil)) })
	select {
	case err := <-done:
		if *err != nil {
			t.Fatal(*err)
		}
		if got != 2 {
			t.Errorf("blocking answer has %d items, want 2", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("blocking query did not return after a change")
	}
}

func TestStatusShowsAppliedAndRejected(t *testing.T) {
	st, c := setup(t)
	write(t, st, func(txn *store.Txn) error {
		if err := txn.AddRevision(&store.Revision{SHA: "good", Status: store.RevisionApplied}); err != nil {
			return err
		}
		if err := txn.AddRevision(&store.Revision{SHA: "bad", Status: store.RevisionFailed, Errors: []manifest.Issue{{Severity: manifest.SeverityError, File: "a.yaml", Line: 3, Message: "boom"}}}); err != nil {
			return err
		}
		return txn.SetSync(&store.SyncState{State: "Failed"})
	})
	s, err := c.Status(context.Background(), client.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Applied == nil || s.Applied.SHA != "good" || s.LastFailed == nil || s.LastFailed.SHA != "bad" || s.Sync.State != "Failed" {
		t.Fatalf("status = %+v", s)
	}
	if got := s.LastFailed.Errors[0].String(); got != "a.yaml:3: boom" {
		t.Errorf("error = %q", got)
	}
	// A good commit after the bad one: the rejection is still shown, with
	// its errors, and its ID says it came before the applied commit.
	write(t, st, func(txn *store.Txn) error {
		return txn.AddRevision(&store.Revision{SHA: "fixed", Status: store.RevisionApplied})
	})
	if s, err = c.Status(context.Background(), client.Query{}); err != nil {
		t.Fatal(err)
	}
	if s.Applied == nil || s.Applied.SHA != "fixed" || s.LastFailed == nil || s.LastFailed.SHA != "bad" {
		t.Fatalf("after a fix: applied %v, last failed %v", s.Applied, s.LastFailed)
	}
	if s.LastFailed.ID >= s.Applied.ID {
		t.Errorf("after a fix: last failed ID %d, applied ID %d; want the failure older", s.LastFailed.ID, s.Applied.ID)
	}
	if len(s.LastFailed.Errors) != 1 || s.LastFailed.Errors[0].String() != "a.yaml:3: boom" {
		t.Errorf("after a fix: last failed errors = %v", s.LastFailed.Errors)
	}
}

func TestBadQueryParameters(t *testing.T) {
	st, _ := setup(t)
	h := New(st, Options{})
	for _, u := range []string{"/v1/objects?index=x", "/v1/objects?index=1&wait=soon", "/v1/revisions?limit=-1"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, u, nil))
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "query parameter") {
			t.Errorf("%s: %d %s", u, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/v1/objects", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /v1/objects: %d, want 405 (the API is read-only)", rec.Code)
	}
}
