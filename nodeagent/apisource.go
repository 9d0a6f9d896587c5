package nodeagent

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/apiserver/client"
)

// APISource follows the controller with blocking queries: the pods bound
// to this node, and the ConfigMaps and Secrets they may use. It reconnects
// with back-off when the controller is away; the node keeps running what
// it has meanwhile.
type APISource struct {
	Client *client.Client // with the agent token
	Node   string
	Log    *slog.Logger
	// Resync, when set, runs before the pods are followed again after the
	// controller was unreachable: it registers the node and reports every
	// pod, so that a restarted controller adopts them before it answers
	// with the node's pods (and the agent does not stop what runs).
	Resync func(ctx context.Context) error
}

// Run implements PodSource.
func (s *APISource) Run(ctx context.Context, update func(Desired)) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var (
		mu       sync.Mutex
		cur      Desired
		havePods bool
	)
	publish := func(f func(*Desired)) {
		mu.Lock()
		defer mu.Unlock()
		f(&cur)
		if !havePods {
			return // never hand the agent an empty set before the first answer
		}
		d := cur
		update(d)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		failed := false
		followQuery(ctx, log, "pods", func(ctx context.Context, idx uint64) (uint64, error) {
			if failed && s.Resync != nil {
				if err := s.Resync(ctx); err != nil {
					return idx, err
				}
			}
			failed = true // until this query answers
			list, err := s.Client.Pods(ctx, client.PodQuery{Node: s.Node, Index: idx, Wait: 5 * time.Minute})
			if err != nil {
				return idx, err
			}
			// A pod being deleted (deletionTimestamp set) keeps running
			// until it leaves the list: the controller first takes it out of
			// every node's load balancer, then drops it, and the agent stops
			// it then.
			pods := make([]*corev1.Pod, 0, len(list.Items))
			for i := range list.Items {
				pods = append(pods, &list.Items[i])
			}
			failed = false
			mu.Lock()
			havePods = true
			mu.Unlock()
			publish(func(d *Desired) { d.Pods = pods })
			return list.Index, nil
		})
	})
	for _, kind := range []string{"ConfigMap", "Secret"} {
		wg.Go(func() {
			followQuery(ctx, log, kind, func(ctx context.Context, idx uint64) (uint64, error) {
				list, err := s.Client.Objects(ctx, client.Query{Kind: kind, Node: s.Node, Index: idx, Wait: 5 * time.Minute})
				if err != nil {
					return idx, err
				}
				if !list.Applied {
					// A controller that has just started knows none yet:
					// the pods keep the ones they have.
					return list.Index, nil
				}
				switch kind {
				case "ConfigMap":
					var cms []*corev1.ConfigMap
					for _, it := range list.Items {
						var cm corev1.ConfigMap
						if json.Unmarshal(it.Object, &cm) == nil {
							cms = append(cms, &cm)
						}
					}
					publish(func(d *Desired) { d.ConfigMaps = cms })
				default:
					var secs []*corev1.Secret
					for _, it := range list.Items {
						var sec corev1.Secret
						if json.Unmarshal(it.Object, &sec) == nil {
							secs = append(secs, &sec)
						}
					}
					publish(func(d *Desired) { d.Secrets = secs })
				}
				return list.Index, nil
			})
		})
	}
	wg.Wait()
	return nil
}

// followQuery runs a blocking query again and again until ctx ends, backing off
// from 250 ms to 1 s while it fails: a restarted controller is found again,
// and told the node's pods, within its start-up grace (2 s), before it may
// make pods of its own.
func followQuery(ctx context.Context, log *slog.Logger, what string, query func(ctx context.Context, idx uint64) (uint64, error)) {
	var idx uint64
	delay := 250 * time.Millisecond
	for ctx.Err() == nil {
		next, err := query(ctx, idx)
		if err == nil {
			idx, delay = next, 250*time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return
		}
		log.Warn("controller unreachable; the node keeps running what it has", "following", what, "err", err, "retry", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, time.Second)
		idx = 0
	}
}
