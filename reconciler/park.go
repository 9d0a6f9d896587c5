package reconciler

import (
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

// Scale-down delay, as Argo Rollouts' scaleDownDelaySeconds: a Deployment
// with the annotation manifest.AnnotationScaleDownDelay (a duration) keeps
// the Running and Ready pods that its rolling updates scale down from an
// old ReplicaSet, for that long, instead of deleting them. Such a pod is
// parked: it keeps running on its node, but it leaves its services'
// endpoints (no new connection reaches it) and counts as a replica of
// nothing, so the rollout, the Deployment's status and its availability go
// on exactly as if it had been deleted. When a ReplicaSet needs pods (a
// `git revert` makes an old one current again), its parked pods come back
// first, under the same UID and without a restart, before any pod is made:
// a revert within the delay is complete as soon as the controller has made
// its passes. A parked pod is deleted, through the usual termination, when
// its delay ends, when its ReplicaSet or Deployment goes, when the
// Deployment loses the annotation (or turns to Recreate, which never runs
// two templates at once), or when it stops being Ready.
//
// Parked pods are rows of the store's parked table (the pod's own row does
// not change), written in the pass's transaction; the endpoints controller
// leaves them out. The table lives in the controller's memory only: a
// restarted controller adopts parked pods from their nodes' reports as
// ordinary pods of their ReplicaSet (rebuilt from them), which the rollout
// then scales down again as surplus (parking them anew, with a new delay,
// if the Deployment still has one). Parked pods hold their resources on
// their nodes: the scheduler counts them as it counts every bound pod.

// parkDelay is the scale-down delay of d, 0 when it parks nothing.
func parkDelay(d *appsv1.Deployment) time.Duration {
	v, ok := d.Annotations[manifest.AnnotationScaleDownDelay]
	if !ok || !isRolling(d) {
		return 0
	}
	delay, err := manifest.ScaleDownDelay(v)
	if err != nil {
		return 0 // validation rejects the revision: it cannot arrive here
	}
	return delay
}

// parkPolicy is what parking means for one ReplicaSet of a Deployment with
// a scale-down delay.
type parkPolicy struct {
	delay      time.Duration
	deployment string // its Key
	// current is set for the ReplicaSet of the Deployment's current
	// template: its pods are not parked when it is scaled down (Git
	// lowered its replicas), but it takes its parked pods back.
	current bool
}

// parking is the scale-down delay's part of one pass.
type parking struct {
	// rows are the parked pods as the pass found them, by pod key;
	// byOwner the parked pods of each ReplicaSet.
	rows    map[string]*store.ParkedPod
	byOwner map[string][]*store.Pod
	// policy holds the ReplicaSets of the Deployments that have a delay
	// (deployments fills it).
	policy map[string]parkPolicy
}

func newParking(parked []*store.ParkedPod, pods []*store.Pod) *parking {
	pk := &parking{rows: make(map[string]*store.ParkedPod, len(parked)), byOwner: map[string][]*store.Pod{}, policy: map[string]parkPolicy{}}
	for _, r := range parked {
		pk.rows[r.Key] = r
	}
	if len(parked) > 0 {
		for _, p := range pods {
			if pk.rows[p.Key] != nil {
				pk.byOwner[p.OwnerKey] = append(pk.byOwner[p.OwnerKey], p)
			}
		}
	}
	return pk
}

func (pk *parking) isParked(key string) bool { return pk.rows[key] != nil }

// parkable is a pod worth keeping for a revert: one that serves now.
func parkable(p *store.Pod) bool {
	return p.NodeName != "" && p.Phase == string(corev1.PodRunning) && p.Ready && !p.Terminating()
}

// sweep deletes the parked pods of a ReplicaSet that are to go (their
// delay ended, the Deployment has none any more, they stopped being
// ready) and returns the others.
func (pk *parking) sweep(rsKey string, deleted map[string]bool, deletePod func(*store.Pod, string), now time.Time) []*store.Pod {
	pol, on := pk.policy[rsKey]
	var kept []*store.Pod
	for _, p := range pk.byOwner[rsKey] {
		switch {
		case deleted[p.Key]:
		case !on:
			deletePod(p, "parked, and its Deployment no longer has a scale-down delay")
		case !now.Before(pk.rows[p.Key].Until):
			deletePod(p, fmt.Sprintf("parked, and the scale-down delay of %s ended", pol.delay))
		case !parkable(p):
			deletePod(p, "parked, and it stopped being ready")
		default:
			kept = append(kept, p)
		}
	}
	return kept
}

// takeBack unparks up to n of a ReplicaSet's parked pods (kept, from
// sweep), those Ready the longest first, and returns how many.
func (pk *parking) takeBack(plan *clusterPlan, rs *store.Object, kept []*store.Pod, n int) int {
	n = min(n, len(kept))
	if n <= 0 {
		return 0
	}
	sortForDeletion(kept) // the last are the ones a scale-down would keep
	for _, p := range kept[len(kept)-n:] {
		plan.unpark = append(plan.unpark, p.Key)
		plan.events = append(plan.events, &store.Event{ObjectKey: "Pod/" + p.Key, Type: corev1.EventTypeNormal, Reason: "Unparked",
			Message: fmt.Sprintf("its ReplicaSet %s needs it again: back in its services", rs.Name)})
	}
	return n
}

// parkOne parks p, a pod its ReplicaSet scales down, if the ReplicaSet's
// Deployment has a delay, the ReplicaSet is not its current one and p is
// serving; it reports whether it did (otherwise p is to be deleted).
func (pk *parking) parkOne(plan *clusterPlan, rs *store.Object, p *store.Pod, now time.Time) bool {
	pol, on := pk.policy[rs.Key]
	if !on || pol.current || !parkable(p) {
		return false
	}
	until := now.Add(pol.delay)
	plan.park = append(plan.park, &store.ParkedPod{Key: p.Key, Until: until, Deployment: pol.deployment})
	plan.events = append(plan.events, &store.Event{ObjectKey: "Pod/" + p.Key, Type: corev1.EventTypeNormal, Reason: "Parked",
		Message: fmt.Sprintf("its ReplicaSet %s was scaled down: parked until %s (scale-down delay of %s), running but out of its services, for a revert to take back",
			rs.Name, until.UTC().Format(time.RFC3339), pol.deployment)})
	return true
}

// orphans deletes the parked pods whose ReplicaSet the pass does not run
// (it was removed, or its Deployment was).
func (pk *parking) orphans(running, deleted map[string]bool, deletePod func(*store.Pod, string)) {
	for owner, ps := range pk.byOwner {
		if running[owner] {
			continue
		}
		for _, p := range ps {
			if !deleted[p.Key] {
				deletePod(p, "parked, and its owner "+owner+" is gone")
			}
		}
	}
}

// parkedAfter are the pods parked once a pass's plan is written (parked
// are the rows it found): the endpoints controller leaves them out.
func parkedAfter(parked []*store.ParkedPod, plan *clusterPlan) map[string]bool {
	out := make(map[string]bool, len(parked)+len(plan.park))
	for _, r := range parked {
		out[r.Key] = true
	}
	for _, k := range plan.unpark {
		delete(out, k)
	}
	for _, r := range plan.park {
		out[r.Key] = true
	}
	return out
}
