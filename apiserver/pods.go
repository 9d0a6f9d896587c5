package apiserver

import (
	"fmt"
	"maps"
	"net/http"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/store"
)

// ExecFunc runs a command in a pod's container over the request's
// connection; see GET /v1/pods/{ns}/{name}/exec.
type ExecFunc func(w http.ResponseWriter, r *http.Request, pod *corev1.Pod)

// LogsFunc streams a pod's container log to w; see GET /v1/pods/{ns}/{name}/log.
type LogsFunc func(w http.ResponseWriter, r *http.Request, pod *corev1.Pod)

func (s *Server) pods(w http.ResponseWriter, r *http.Request) {
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	q := store.PodQuery{Namespace: r.URL.Query().Get("namespace"), NodeName: r.URL.Query().Get("node")}
	var sel labels.Selector
	if v := r.URL.Query().Get("selector"); v != "" {
		if sel, err = labels.Parse(v); err != nil {
			writeError(w, r, http.StatusBadRequest, fmt.Errorf("query parameter selector: %w", err))
			return
		}
	}
	var out api.PodList
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		pods, err := snap.Pods(ws, q)
		if err != nil {
			return 0, err
		}
		out.Index = snap.Index(ws, store.TablePods)
		// People see which pods are parked; agents (a node's pods) need not.
		parked := map[string]*store.ParkedPod{}
		if q.NodeName == "" {
			rows, err := snap.ParkedPods(ws)
			if err != nil {
				return 0, err
			}
			for _, r := range rows {
				parked[r.Key] = r
			}
			out.Index = snap.MaxIndex(ws, store.TablePods, store.TableParked)
		}
		out.Items = make([]corev1.Pod, 0, len(pods))
		for _, p := range pods {
			if sel != nil && !sel.Matches(labels.Set(p.Labels())) {
				continue
			}
			out.Items = append(out.Items, *withParked(p.Object(), parked[p.Key]))
		}
		return out.Index, nil
	})
	s.answer(w, r, out.Index, out, err)
}

func (s *Server) pod(w http.ResponseWriter, r *http.Request) {
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	key := r.PathValue("namespace") + "/" + r.PathValue("name")
	var (
		out   *corev1.Pod
		index uint64
	)
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		index = snap.MaxIndex(ws, store.TablePods, store.TableParked)
		p, err := snap.Pod(ws, key)
		if err != nil {
			return index, err
		}
		parked, err := snap.ParkedPod(ws, key)
		if err != nil {
			return index, err
		}
		out = withParked(p.Object(), parked)
		return index, nil
	})
	s.answer(w, r, index, out, err)
}

// withParked is o, served, with the annotations of a parked pod when r is
// its parked row. o's annotations are its template's, shared: they are
// copied first.
func withParked(o *corev1.Pod, r *store.ParkedPod) *corev1.Pod {
	if r == nil {
		return o
	}
	a := maps.Clone(o.Annotations)
	if a == nil {
		a = map[string]string{}
	}
	a[api.AnnotationParkedUntil] = r.Until.UTC().Format(time.RFC3339)
	a[api.AnnotationParkedBy] = r.Deployment
	o.Annotations = a
	return o
}

func (s *Server) podLog(w http.ResponseWriter, r *http.Request) {
	s.withPod(w, r, s.opts.Logs, "this server does not serve logs")
}

// withPod looks the request's pod up and hands it to h (logs, exec).
func (s *Server) withPod(w http.ResponseWriter, r *http.Request, h func(http.ResponseWriter, *http.Request, *corev1.Pod), missing string) {
	if !s.controllerAuth(w, r) {
		return
	}
	if h == nil {
		writeError(w, r, http.StatusNotImplemented, fmt.Errorf("%s", missing))
		return
	}
	key := r.PathValue("namespace") + "/" + r.PathValue("name")
	p, err := s.store.Snapshot().Pod(memdb.NewWatchSet(), key)
	if err != nil {
		s.answer(w, r, 0, nil, err)
		return
	}
	h(w, r, p.Object())
}

func (s *Server) podExec(w http.ResponseWriter, r *http.Request) {
	s.withPod(w, r, s.opts.Exec, "this server does not run commands in pods")
}
