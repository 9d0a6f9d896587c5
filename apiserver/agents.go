package apiserver

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/store"
)

// Agents is what the controller does for its agents: registration, leases
// and status reports. The apiserver authenticates the agent and decodes
// the request; Agents validates and writes.
type Agents interface {
	Register(ctx context.Context, reg *api.NodeRegistration) (*corev1.Node, error)
	RenewLease(ctx context.Context, node string) error
	// ServicesSynced records that a node programmed the services and
	// endpoints up to a store index (see GET /v1/services).
	ServicesSynced(node string, index uint64) error
	ReportPod(ctx context.Context, node string, pod *corev1.Pod) error
	ForgetPod(ctx context.Context, node, namespace, name string, uid string) error
}

func (s *Server) agentAuth(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.Agents == nil || s.opts.AgentToken == "" {
		writeError(w, r, http.StatusNotImplemented, fmt.Errorf("this server does not take agents"))
		return false
	}
	if !s.isAgent(r) {
		writeError(w, r, http.StatusUnauthorized, fmt.Errorf("agent token missing or wrong: join with the token the controller wrote to its data directory"))
		return false
	}
	return true
}

// controllerAuth lets a request through to a joined node's logs, exec and
// usage only with its controller's token (see Options.ControllerToken).
func (s *Server) controllerAuth(w http.ResponseWriter, r *http.Request) bool {
	if s.opts.ControllerToken == "" {
		return true
	}
	got, ok := strings.CutPrefix(r.Header.Get(api.AgentTokenHeader), "Bearer ")
	if ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.ControllerToken)) == 1 {
		return true
	}
	writeError(w, r, http.StatusUnauthorized, fmt.Errorf("this node serves logs, exec and usage to its controller only: ask the controller (keelson --server URL logs|exec|top)"))
	return false
}

// isAgent reports whether r carries the agents' token.
func (s *Server) isAgent(r *http.Request) bool {
	if s.opts.AgentToken == "" {
		return false
	}
	got, ok := strings.CutPrefix(r.Header.Get(api.AgentTokenHeader), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(s.opts.AgentToken)) == 1
}

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 4<<20))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %w", err)
	}
	return nil
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	if !s.agentAuth(w, r) {
		return
	}
	var reg api.NodeRegistration
	if err := decodeBody(r, &reg); err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	n, err := s.opts.Agents.Register(r.Context(), &reg)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	writeJSON(w, r, http.StatusOK, n)
}

func (s *Server) lease(w http.ResponseWriter, r *http.Request) {
	if !s.agentAuth(w, r) {
		return
	}
	if err := s.opts.Agents.RenewLease(r.Context(), r.PathValue("name")); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, store.ErrNotFound) {
			code = http.StatusNotFound
		}
		writeError(w, r, code, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// servicesSynced answers PUT /v1/nodes/{name}/services?index=N.
func (s *Server) servicesSynced(w http.ResponseWriter, r *http.Request) {
	if !s.agentAuth(w, r) {
		return
	}
	idx, err := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, fmt.Errorf("query parameter index: %q is not a number", r.URL.Query().Get("index")))
		return
	}
	if err := s.opts.Agents.ServicesSynced(r.PathValue("name"), idx); err != nil {
		code := http.StatusBadRequest
		if errors.Is(err, store.ErrNotFound) {
			code = http.StatusNotFound
		}
		writeError(w, r, code, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) podStatus(w http.ResponseWriter, r *http.Request) {
	if !s.agentAuth(w, r) {
		return
	}
	node := r.URL.Query().Get("node")
	if r.Method == http.MethodDelete {
		if err := s.opts.Agents.ForgetPod(r.Context(), node, r.PathValue("namespace"), r.PathValue("name"), r.URL.Query().Get("uid")); err != nil {
			writeError(w, r, http.StatusBadRequest, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var p corev1.Pod
	if err := decodeBody(r, &p); err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	if p.Namespace != r.PathValue("namespace") || p.Name != r.PathValue("name") {
		writeError(w, r, http.StatusBadRequest, fmt.Errorf("pod %s/%s reported at %s", p.Namespace, p.Name, r.URL.Path))
		return
	}
	if err := s.opts.Agents.ReportPod(r.Context(), node, &p); err != nil {
		code := http.StatusConflict
		if errors.Is(err, store.ErrNotFound) {
			code = http.StatusNotFound
		}
		writeError(w, r, code, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) nodes(w http.ResponseWriter, r *http.Request) {
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	var out api.NodeList
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		nodes, err := snap.Nodes(ws)
		if err != nil {
			return 0, err
		}
		out.Index = snap.Index(ws, store.TableNodes)
		out.Items = make([]corev1.Node, 0, len(nodes))
		for _, n := range nodes {
			out.Items = append(out.Items, *n.Node)
		}
		return out.Index, nil
	})
	s.answer(w, r, out.Index, out, err)
}
