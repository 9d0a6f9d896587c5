package nodeagent

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/ingress"
)

// IngressProxy is the node's Ingress proxy (nodeagent/ingress.Server).
type IngressProxy interface {
	Update(t *ingress.Table)
}

// IngressRoutes follows the controller's Ingresses, IngressClasses and TLS
// Secrets and, with the Services and endpoints the Services follower hands
// it (SetServices), gives the node's proxy a new routing table on every
// change. While the controller is away the proxy keeps its table.
type IngressRoutes struct {
	Client *client.Client
	// Node is this node's name: the controller gives it the Secrets of its
	// pods and of the Ingresses.
	Node  string
	Proxy IngressProxy
	Log   *slog.Logger

	mu        sync.Mutex
	ingresses []ingress.Ingress
	classes   []*networkingv1.IngressClass
	secrets   []*corev1.Secret
	services  []api.ServiceEndpoints
	have      int // which of the four inputs have arrived (bits)
	prev      *ingress.Table
}

const (
	haveIngresses = 1 << iota
	haveClasses
	haveSecrets
	haveServices
	haveAll = haveIngresses | haveClasses | haveSecrets | haveServices
)

// SetServices takes the Services with their endpoint slices (from the
// Services follower).
func (r *IngressRoutes) SetServices(items []api.ServiceEndpoints) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.services = items
	r.have |= haveServices
	r.rebuildLocked()
}

// Run follows the Ingress objects until ctx ends.
func (r *IngressRoutes) Run(ctx context.Context) {
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	for _, kind := range []string{"Ingress", "IngressClass", "Secret"} {
		wg.Go(func() {
			followQuery(ctx, log, kind, func(ctx context.Context, idx uint64) (uint64, error) {
				list, err := r.Client.Objects(ctx, client.Query{Kind: kind, Node: r.Node, Index: idx, Wait: 5 * time.Minute})
				if err != nil {
					return idx, err
				}
				if list.Applied { // else the controller has just started: keep the routes
					r.set(kind, list.Items)
				}
				return list.Index, nil
			})
		})
	}
	wg.Wait()
}

func (r *IngressRoutes) set(kind string, items []api.Object) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch kind {
	case "Ingress":
		r.ingresses = r.ingresses[:0:0]
		for _, it := range items {
			var ing networkingv1.Ingress
			if json.Unmarshal(it.Object, &ing) == nil {
				r.ingresses = append(r.ingresses, ingress.Ingress{CreateIndex: it.CreateIndex, Ingress: &ing})
			}
		}
		r.have |= haveIngresses
	case "IngressClass":
		r.classes = r.classes[:0:0]
		for _, it := range items {
			var c networkingv1.IngressClass
			if json.Unmarshal(it.Object, &c) == nil {
				r.classes = append(r.classes, &c)
			}
		}
		r.have |= haveClasses
	case "Secret":
		r.secrets = r.secrets[:0:0]
		for _, it := range items {
			// Only TLS Secrets matter here; the type is read before the
			// values are decoded.
			if !strings.Contains(string(it.Object), string(corev1.SecretTypeTLS)) {
				continue
			}
			var s corev1.Secret
			if json.Unmarshal(it.Object, &s) == nil && s.Type == corev1.SecretTypeTLS {
				r.secrets = append(r.secrets, &s)
			}
		}
		r.have |= haveSecrets
	}
	r.rebuildLocked()
}

// rebuildLocked builds the table once every input has arrived, so that
// the proxy never serves a partial view (say, Ingresses without their
// Services: every route would answer 503).
func (r *IngressRoutes) rebuildLocked() {
	if r.have != haveAll {
		return
	}
	in := ingress.Input{Ingresses: r.ingresses, Classes: r.classes, Secrets: r.secrets, Previous: r.prev}
	for i := range r.services {
		in.Services = append(in.Services, &r.services[i].Service)
		for j := range r.services[i].Slices {
			in.EndpointSlices = append(in.EndpointSlices, &r.services[i].Slices[j])
		}
	}
	t, _ := ingress.Build(in) // problems are the controller's to report
	r.prev = t
	r.Proxy.Update(t)
}
