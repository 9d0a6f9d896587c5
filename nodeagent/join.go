package nodeagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/store"
)

// LeaseInterval is how often an agent renews its node's lease by default.
const LeaseInterval = 10 * time.Second

// Join registers the node with the controller, retrying with back-off
// until it answers, and returns the node with its pod CIDR. A wrong token
// is final.
func Join(ctx context.Context, c *client.Client, reg *api.NodeRegistration, log *slog.Logger) (*corev1.Node, error) {
	delay := 500 * time.Millisecond
	for {
		n, err := c.Register(ctx, reg)
		if err == nil {
			return n, nil
		}
		if errors.Is(err, client.ErrUnauthorized) {
			return nil, fmt.Errorf("join the controller as %s: %w", reg.Node.Name, err)
		}
		log.Warn("controller unreachable; retrying", "err", err, "retry", delay)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(delay*2, 30*time.Second)
	}
}

// KeepLease renews the node's lease every interval until ctx ends,
// registering again when the controller does not know the node (it
// restarted).
func KeepLease(ctx context.Context, c *client.Client, reg *api.NodeRegistration, interval time.Duration, log *slog.Logger) {
	if interval <= 0 {
		interval = LeaseInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := c.RenewLease(ctx, reg.Node.Name)
		if errors.Is(err, client.ErrNotFound) {
			_, err = c.Register(ctx, reg)
		}
		if err != nil && ctx.Err() == nil {
			log.Warn("renew node lease", "err", err)
		}
	}
}

// ReportStatus sends the status of the node's pods to the controller each
// time it changes in the agent's store, and tells it of pods that are gone.
func ReportStatus(ctx context.Context, st *store.Store, c *client.Client, node string, log *slog.Logger) {
	sent := map[string]uint64{} // pod key -> ModifyIndex sent
	uids := map[string]string{}
	var idx uint64
	for ctx.Err() == nil {
		var pods []*store.Pod
		err := st.Blocking(ctx, idx, 5*time.Minute, func(ws memdb.WatchSet, snap *store.Snapshot) (uint64, error) {
			var err error
			pods, err = snap.Pods(ws, store.PodQuery{})
			idx = snap.Index(ws, store.TablePods)
			return idx, err
		})
		if err != nil {
			return
		}
		seen := map[string]bool{}
		failed := false
		for _, p := range pods {
			seen[p.Key] = true
			if sent[p.Key] == p.ModifyIndex || p.Terminating() {
				continue // unchanged, or being stopped: nothing to tell
			}
			if err := c.ReportPod(ctx, node, p.Object()); err != nil {
				if !errors.Is(err, client.ErrConflict) {
					failed = true
					log.Warn("report pod status", "pod", p.Key, "err", err)
					continue
				}
				log.Debug("controller refused a pod report", "pod", p.Key, "err", err)
			}
			sent[p.Key] = p.ModifyIndex
			uids[p.Key] = string(p.UID)
		}
		for key := range sent {
			if seen[key] {
				continue
			}
			ns, name, _ := strings.Cut(key, "/")
			if err := c.ForgetPod(ctx, node, ns, name, uids[key]); err != nil {
				failed = true
				continue
			}
			delete(sent, key)
			delete(uids, key)
		}
		if failed {
			// Try again soon even if nothing changes here.
			idx = 0
			select {
			case <-ctx.Done():
				return
			case <-time.After(2 * time.Second):
			}
		}
	}
}

// ReportAll sends the status of every pod of the node once, for a
// controller that has just started.
func ReportAll(ctx context.Context, st *store.Store, c *client.Client, node string) error {
	pods, err := st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
	if err != nil {
		return err
	}
	for _, p := range pods {
		if p.Terminating() {
			continue // being stopped: the controller must not adopt it
		}
		if err := c.ReportPod(ctx, node, p.Object()); err != nil && !errors.Is(err, client.ErrConflict) {
			return fmt.Errorf("report pod %s: %w", p.Key, err)
		}
	}
	return nil
}
