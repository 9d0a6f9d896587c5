package apiserver

import (
	"net/http"

	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/store"
)

// services answers GET /v1/services[?namespace=]: every Service with its
// endpoint slices, as agents program them. It blocks on the objects and
// endpoints tables.
func (s *Server) services(w http.ResponseWriter, r *http.Request) {
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	ns := r.URL.Query().Get("namespace")
	var out api.ServiceList
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		objs, err := snap.Objects(ws, store.ObjectQuery{Kind: "Service", Namespace: ns})
		if err != nil {
			return 0, err
		}
		eps, err := snap.AllEndpoints(ws, ns)
		if err != nil {
			return 0, err
		}
		// Whole once the controller is warm (its endpoints computed with
		// the agents' reports in): until then agents keep what they have.
		sync, err := snap.Sync(ws)
		if err != nil {
			return 0, err
		}
		out.Applied = sync != nil && !sync.WarmSince.IsZero()
		byKey := make(map[string]*store.Endpoints, len(eps))
		for _, e := range eps {
			byKey[e.Key] = e
		}
		out.Items = make([]api.ServiceEndpoints, 0, len(objs))
		for _, o := range objs {
			svc, ok := o.Obj.(*corev1.Service)
			if !ok {
				continue
			}
			item := api.ServiceEndpoints{Service: *svc, Slices: []discoveryv1.EndpointSlice{}}
			if e := byKey[o.Namespace+"/"+o.Name]; e != nil {
				for _, sl := range e.Slices {
					item.Slices = append(item.Slices, *sl)
				}
			}
			out.Items = append(out.Items, item)
		}
		out.Index = snap.MaxIndex(ws, store.TableObjects, store.TableEndpoints, store.TableSync)
		return out.Index, nil
	})
	s.answer(w, r, out.Index, out, err)
}

// endpointSlices answers GET /v1/endpointslices[?namespace=].
func (s *Server) endpointSlices(w http.ResponseWriter, r *http.Request) {
	idx, wait, err := blocking(r)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err)
		return
	}
	ns := r.URL.Query().Get("namespace")
	var out api.EndpointSliceList
	err = s.store.Blocking(r.Context(), idx, wait, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
		eps, err := snap.AllEndpoints(ws, ns)
		if err != nil {
			return 0, err
		}
		out.Items = []discoveryv1.EndpointSlice{}
		for _, e := range eps {
			for _, sl := range e.Slices {
				out.Items = append(out.Items, *sl)
			}
		}
		out.Index = snap.Index(ws, store.TableEndpoints)
		return out.Index, nil
	})
	s.answer(w, r, out.Index, out, err)
}
