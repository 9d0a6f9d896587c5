package apiserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/internal/podrefs"
	"github.com/keelson/keelson/store"
)

// maxWait caps a blocking query's wait.
const maxWait = 5 * time.Minute

// Options configure a Server.
type Options struct {
	// Webhook, when set, serves POST /v1/hooks/git.
	Webhook http.Handler
	// Gatherer serves /metrics; nil serves the default registry.
	Gatherer prometheus.Gatherer
	// Logs, when set, serves GET /v1/pods/{namespace}/{name}/log.
	Logs LogsFunc
	// Exec, when set, serves GET /v1/pods/{namespace}/{name}/exec.
	Exec ExecFunc
	// Agents and AgentToken, when set, let agents join and report
	// (POST /v1/nodes, PUT /v1/nodes/{name}/lease, PUT and DELETE
	// /v1/pods/{namespace}/{name}/status); requests carrying the token also
	// get Secret values, which agents need to run pods.
	Agents     Agents
	AgentToken string
	// ControllerToken, when set, is the token of the controller this node
	// joined: logs, exec and usage are then served only to requests that
	// carry it (the controller's, which proxies users' requests), not to
	// whoever reaches the node's address.
	ControllerToken string
	// Usage, when set, serves GET /v1/usage (keelson top).
	Usage func(ctx context.Context) (*api.UsageList, error)
	// History, when set, serves GET /v1/history/{kind}/{namespace}/{name}
	// (keelson rollout history).
	History HistorySource
	Log     *slog.Logger
}

// Server is the HTTP API. It holds no state of its own.
type Server struct {
	store *store.Store
	opts  Options
	mux   *http.ServeMux
}

// New returns the API over st.
func New(st *store.Store, opts Options) *Server {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{store: st, opts: opts, mux: http.NewServeMux()}
	s.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "ok")
	})
	g := opts.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	s.mux.HandleFunc("GET /v1/status", s.status)
	s.mux.HandleFunc("GET /v1/revisions", s.revisions)
	s.mux.HandleFunc("GET /v1/objects", s.objects)
	s.mux.HandleFunc("GET /v1/objects/{kind}/{name}", s.object)
	s.mux.HandleFunc("GET /v1/objects/{kind}/{namespace}/{name}", s.object)
	s.mux.HandleFunc("GET /v1/events", s.events)
	s.mux.HandleFunc("GET /v1/history/{kind}/{namespace}/{name}", s.history)
	s.mux.HandleFunc("GET /v1/pods", s.pods)
	s.mux.HandleFunc("GET /v1/pods/{namespace}/{name}", s.pod)
	s.mux.HandleFunc("GET /v1/pods/{namespace}/{name}/log", s.podLog)
	s.mux.HandleFunc("GET /v1/pods/{namespace}/{name}/exec", s.podExec)
	s.mux.HandleFunc("GET /v1/nodes", s.nodes)
	s.mux.HandleFunc("GET /v1/services", s.services)
	s.mux.HandleFunc("GET /v1/endpointslices", s.endpointSlices)
	s.mux.HandleFunc("GET /v1/usage", func(w http.ResponseWriter, r *http.Request) {
		if !s.controllerAuth(w, r) {
			return
		}
		if s.opts.Usage == nil {
			writeError(w, r, http.StatusNotImplemented, fmt.Errorf("this server does not measure usage"))
			return
		}
		u, err := s.opts.Usage(r.Context())
		if err != nil {
			writeError(w, r, http.StatusBadGateway, err)
			return
		}
		writeJSON(w, r, http.StatusOK, u)
	})
	s.mux.HandleFunc("POST /v1/nodes", s.register)
	s.mux.HandleFunc("PUT /v1/nodes/{name}/lease", s.lease)
	s.mux.HandleFunc("PUT /v1/nodes/{name}/services", s.servicesSynced)
	s.mux.HandleFunc("PUT /v1/pods/{namespace}/{name}/status", s.podStatus)
	s.mux.HandleFunc("DELETE /v1/pods/{namespace}/{name}/status", s.podStatus)
	if opts.Webhook != nil {
		s.mux.Handle("/v1/hooks/git", opts.Webhook)
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// blocking parses ?index=N&wait=D.
func blocking(r *http.Request) (uint64, time.Duration, error) {
	var (
		idx  uint64
		wait time.Duration
		err  error
	)
	if v := r.URL.Query().Get("index"); v != "" {
		if idx, err = strconv.ParseUint(v, 10, 64); err != nil {
			return 0, 0, fmt.Errorf("query parameter index: %q is not a number", v)
		}
	}
	if v := r.URL.Query().Get("wait"); v != "" {
		if wait, err = time.ParseDuration(v); err != nil {
			return 0, 0, fmt.Errorf("query parameter wait: %q is not a duration (for example 30s)", v)
		}
	} else if idx > 0 {
		wait = 30 * time.Second
	}
	return idx, min(wait, maxWait), nil
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	var out api.Status
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		out = api.Status{}
		var err error
		if out.Sync, err = snap.Sync(ws); err != nil {
			return 0, err
		}
		if out.Applied, err = snap.LastRevision(ws, store.RevisionApplied); err != nil {
			return 0, err
		}
		// The newest rejection stays in the status after a later good
		// commit: what was wrong with it is still worth knowing, and its
		// ID says whether it came before or after the applied one.
		if out.LastFailed, err = snap.LastRevision(ws, store.RevisionFailed); err != nil {
			return 0, err
		}
		if out.Recent, err = snap.Revisions(ws, 8); err != nil {
			return 0, err
		}
		objs, err := snap.Objects(ws, store.ObjectQuery{})
		if err != nil {
			return 0, err
		}
		out.Objects = len(objs)
		out.RolledBack = rolledBack(objs)
		pods, err := snap.Pods(ws, store.PodQuery{})
		if err != nil {
			return 0, err
		}
		out.Pods = len(pods)
		for _, p := range pods {
			if p.NodeName == "" {
				out.PodsUnscheduled++
			}
		}
		nodes, err := snap.Nodes(ws)
		if err != nil {
			return 0, err
		}
		out.Nodes = len(nodes)
		out.Index = snap.MaxIndex(ws, store.TableSync, store.TableRevisions, store.TableObjects, store.TablePods, store.TableNodes, store.TableEndpoints)
		return out.Index, nil
	})
	s.answer(w, r, out.Index, out, err)
}

func (s *Server) revisions(w http.ResponseWriter, r *http.Request) {
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	limit := 0
	if v := r.URL.Query().Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			writeError(w, r, http.StatusBadRequest, fmt.Errorf("query parameter limit: %q is not a count", v))
			return
		}
	}
	var out api.RevisionList
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		var err error
		out.Items, err = snap.Revisions(ws, limit)
		out.Index = snap.Index(ws, store.TableRevisions)
		return out.Index, err
	})
	if out.Items == nil {
		out.Items = []*store.Revision{}
	}
	s.answer(w, r, out.Index, out, err)
}

func (s *Server) objects(w http.ResponseWriter, r *http.Request) {
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	q := store.ObjectQuery{Kind: r.URL.Query().Get("kind"), Namespace: r.URL.Query().Get("namespace")}
	if v := r.URL.Query().Get("selector"); v != "" {
		sel, err := labels.Parse(v)
		if err != nil {
			writeError(w, r, http.StatusBadRequest, fmt.Errorf("query parameter selector: %w", err))
			return
		}
		q.Selector = sel
	}
	agent, node := s.isAgent(r), r.URL.Query().Get("node")
	if agent && q.Kind == "Secret" && node == "" {
		writeError(w, r, http.StatusBadRequest, fmt.Errorf("an agent asks for the Secrets of its node: query parameter node"))
		return
	}
	var out api.ObjectList
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		objs, err := snap.Objects(ws, q)
		if err != nil {
			return 0, err
		}
		applied, err := snap.LastRevision(ws, store.RevisionApplied)
		if err != nil {
			return 0, err
		}
		out.Applied = applied != nil
		out.Index = snap.MaxIndex(ws, store.TableObjects, store.TableRevisions)
		if agent && q.Kind == "Secret" {
			var podsIndex uint64
			objs, podsIndex, err = nodeSecrets(ws, snap, node, objs)
			if err != nil {
				return 0, err
			}
			out.Index = max(out.Index, podsIndex)
		}
		out.Items = make([]api.Object, 0, len(objs))
		for _, o := range objs {
			item, err := wire(o, agent)
			if err != nil {
				return 0, err
			}
			out.Items = append(out.Items, item)
		}
		return out.Index, nil
	})
	s.answer(w, r, out.Index, out, err)
}

// nodeSecrets keeps of secrets those a node needs: the ones its pods refer
// to (volumes, environment, imagePullSecrets) and the certificates of the
// cluster's Ingresses, which every node serves. The index it returns moves
// when a pod is bound to the node (pods are immutable, so only a new pod
// brings new references); a Secret no longer used leaves the node's list
// with the next change.
func nodeSecrets(ws memdb.WatchSet, snap *store.Snapshot, node string, secrets []*store.Object) ([]*store.Object, uint64, error) {
	want := map[string]bool{}
	pods, err := snap.Pods(ws, store.PodQuery{NodeName: node})
	if err != nil {
		return nil, 0, err
	}
	var index uint64
	for _, p := range pods {
		index = max(index, p.CreateIndex)
		podrefs.Walk(p.Base, func(string) {}, func(name string) { want[p.Namespace+"/"+name] = true })
	}
	ings, err := snap.Objects(ws, store.ObjectQuery{Kind: "Ingress"})
	if err != nil {
		return nil, 0, err
	}
	for _, o := range ings {
		if ing, ok := o.Obj.(*networkingv1.Ingress); ok {
			for _, t := range ing.Spec.TLS {
				want[ing.Namespace+"/"+t.SecretName] = true
			}
		}
	}
	out := secrets[:0:0]
	for _, o := range secrets {
		if want[o.Namespace+"/"+o.Name] {
			out = append(out, o)
		}
	}
	return out, index, nil
}

func (s *Server) object(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("kind") + "/"
	if ns := r.PathValue("namespace"); ns != "" {
		key += ns + "/"
	}
	key += r.PathValue("name")
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	var (
		out   api.Object
		index uint64
	)
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		index = snap.Index(ws, store.TableObjects)
		o, err := snap.Object(ws, key)
		if err != nil {
			return index, err
		}
		out, err = wire(o, false) // an agent gets Secret values from its node's list only
		return index, err
	})
	s.answer(w, r, index, out, err)
}

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	var out api.EventList
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		var err error
		out.Items, err = snap.Events(ws, r.URL.Query().Get("object"))
		out.Index = snap.Index(ws, store.TableEvents)
		return out.Index, err
	})
	if out.Items == nil {
		out.Items = []*store.Event{}
	}
	s.answer(w, r, out.Index, out, err)
}

// rolledBack lists the Deployments that run an older template than Git
// has: their failed ReplicaSet is marked with the Deployment's current hash.
func rolledBack(objs []*store.Object) []api.RolledBack {
	byKey := make(map[string]*store.Object, len(objs))
	for _, o := range objs {
		byKey[o.Key] = o
	}
	var out []api.RolledBack
	for _, o := range objs {
		rs, ok := o.Obj.(*appsv1.ReplicaSet)
		if !ok || rs.Annotations[api.AnnotationRolledBackAt] == "" {
			continue
		}
		if d := byKey[o.OwnerKey]; d != nil && d.Hash == rs.Annotations[api.AnnotationRolledBackAt] {
			out = append(out, api.RolledBack{Object: d.Key, Running: rs.Annotations[api.AnnotationRolledBackTo], Failed: rs.Name,
				Reason: rs.Annotations[api.AnnotationRolledBackReason]})
		}
	}
	return out
}

// wire turns a stored object into its wire form, with Secret values removed
// unless the reader is an agent.
func wire(o *store.Object, agent bool) (api.Object, error) {
	obj := o.Obj
	if sec, ok := obj.(*corev1.Secret); ok && !agent {
		obj = redactSecret(sec)
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return api.Object{}, fmt.Errorf("encode %s: %w", o.Key, err)
	}
	if o.Status != nil {
		// The observed status, as Kubernetes serves it beside the spec.
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err == nil {
			m["status"] = o.Status
			if b, err := json.Marshal(m); err == nil {
				raw = b
			}
		}
	}
	return api.Object{
		Key: o.Key, Kind: o.Kind, Namespace: o.Namespace, Name: o.Name,
		File: o.File, Line: o.Line, Revision: o.Revision,
		CreateIndex: o.CreateIndex, ModifyIndex: o.ModifyIndex,
		Object: raw,
	}, nil
}

// redactSecret keeps a Secret's keys and drops its values.
func redactSecret(sec *corev1.Secret) runtime.Object {
	c := sec.DeepCopy()
	for k := range c.Data {
		c.Data[k] = nil
	}
	for k := range c.StringData {
		c.StringData[k] = ""
	}
	if c.Annotations != nil {
		delete(c.Annotations, corev1.LastAppliedConfigAnnotation)
	}
	return c
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request, index uint64, body any, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		writeError(w, r, http.StatusNotFound, err)
		return
	case errors.Is(err, context.Canceled):
		return // the client went away
	case err != nil:
		s.opts.Log.Error("api request failed", "path", r.URL.Path, "err", err)
		writeError(w, r, http.StatusInternalServerError, err)
		return
	}
	w.Header().Set(api.IndexHeader, strconv.FormatUint(index, 10))
	writeJSON(w, r, http.StatusOK, body)
}

// writeJSON answers with body as JSON: indented when pretty says so.
func writeJSON(w http.ResponseWriter, r *http.Request, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	if pretty(r) {
		enc.SetIndent("", "  ")
	}
	_ = enc.Encode(body) // the client is gone if this fails
}

// pretty says whether to indent JSON answers, as the Kubernetes API server
// does: when asked (?pretty=true) or for a person at curl or wget. Programs
// (keelson, agents) get it compact: fewer bytes, and indenting took a tenth
// of an agent's CPU while its pods started.
func pretty(r *http.Request) bool {
	if r.URL.RawQuery != "" { // reports and leases have none to parse
		if v := r.URL.Query().Get("pretty"); v != "" {
			b, _ := strconv.ParseBool(v)
			return b
		}
	}
	ua := r.UserAgent()
	return strings.HasPrefix(ua, "curl/") || strings.HasPrefix(ua, "Wget/")
}

func writeError(w http.ResponseWriter, r *http.Request, code int, err error) {
	writeJSON(w, r, code, api.Error{Error: err.Error()})
}
