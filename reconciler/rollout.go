package reconciler

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/store"
)

// The deployment controller, as Kubernetes' (pkg/controller/deployment):
// a Deployment owns one ReplicaSet per pod template it has had, named by
// the template's hash; it rolls from the old ones to the new one within
// maxSurge and maxUnavailable (RollingUpdate) or by scaling the old ones to
// zero first (Recreate), scales them proportionally when its replicas change
// mid-rollout, keeps revisionHistoryLimit old ones at zero replicas, and
// reports its progress against progressDeadlineSeconds.
//
// Where its state lives: the controller has no database, and a Deployment's
// row loses its status whenever Git changes the Deployment (plan.go replaces
// the row). So what a rollout needs across such changes is kept on the
// ReplicaSets, which only the controller writes: their replicas, the
// revision annotation, and the Deployment's last status (with the
// Progressing condition and so the time progress last happened) as
// rolloutStatusAnnotation on the ReplicaSet of the newest revision. A
// restarted controller has none of these: it rebuilds the ReplicaSets from
// the pods the agents report (reconstructReplicaSets).

const (
	revisionAnnotation        = "deployment.kubernetes.io/revision"
	revisionHistoryAnnotation = "deployment.kubernetes.io/revision-history"
	desiredReplicasAnnotation = "deployment.kubernetes.io/desired-replicas"
	maxReplicasAnnotation     = "deployment.kubernetes.io/max-replicas"
	// rolloutStatusAnnotation holds, on a Deployment's ReplicaSet of the
	// newest revision, the Deployment's last status as JSON.
	rolloutStatusAnnotation = "keelson.dev/deployment-status"
)

// The reasons of a Deployment's conditions, as Kubernetes names them.
const (
	reasonNewRSCreated   = "NewReplicaSetCreated"
	reasonFoundNewRS     = "FoundNewReplicaSet"
	reasonRSUpdated      = "ReplicaSetUpdated"
	reasonNewRSAvailable = "NewReplicaSetAvailable"
	reasonTimedOut       = "ProgressDeadlineExceeded"
	reasonPaused         = "DeploymentPaused"
	reasonResumed        = "DeploymentResumed"
	reasonMinAvailable   = "MinimumReplicasAvailable"
	reasonMinUnavailable = "MinimumReplicasUnavailable"
)

// Defaults Kubernetes' API server gives a Deployment; objects from Git
// arrive without them.
const (
	defaultProgressDeadline     = 600
	defaultRevisionHistoryLimit = 10
)

var defaultRollingPercent = intstr.FromString("25%")

// ownedRS is one ReplicaSet of a Deployment during a pass: its row (a copy
// once the pass changes it) and what its pods showed at the start of the
// pass, as a ReplicaSet's status does in Kubernetes.
type ownedRS struct {
	obj   *store.Object
	rs    *appsv1.ReplicaSet
	dirty bool // changed by this pass: to be upserted
	// live are the pods that run or will: not ended, not deleted, not
	// parked; parked counts its parked pods (park.go), which keep it from
	// being pruned.
	live             []*store.Pod
	ready, available int32
	parked           int
}

func (r *ownedRS) replicas() int32 { return int32Or(r.rs.Spec.Replicas, 1) }

// revision is the deployment.kubernetes.io/revision annotation, 0 if none.
func (r *ownedRS) revision() int64 {
	v, _ := strconv.ParseInt(r.rs.Annotations[revisionAnnotation], 10, 64)
	return v
}

func (r *ownedRS) created() time.Time { return r.rs.CreationTimestamp.Time }

// edit returns the ReplicaSet to change, copying the stored one first. The
// template is shared: nothing here changes it.
func (r *ownedRS) edit() *appsv1.ReplicaSet {
	if !r.dirty {
		c := *r.rs
		c.Annotations = maps.Clone(r.rs.Annotations)
		if c.Annotations == nil {
			c.Annotations = map[string]string{}
		}
		n := r.replicas()
		c.Spec.Replicas = &n
		o := *r.obj
		o.Obj = &c
		r.obj, r.rs, r.dirty = &o, &c, true
	}
	return r.rs
}

// newOwnedRS reads a ReplicaSet row and its pods.
func newOwnedRS(o *store.Object, pods []*store.Pod, deleted map[string]bool, now time.Time) *ownedRS {
	r := &ownedRS{obj: o, rs: o.Obj.(*appsv1.ReplicaSet), live: make([]*store.Pod, 0, len(pods))}
	for _, p := range pods {
		if deleted[p.Key] || podEnded(p) {
			continue
		}
		r.live = append(r.live, p)
		if p.Ready {
			r.ready++
		}
		if podAvailable(p, r.rs.Spec.MinReadySeconds, now) {
			r.available++
		}
	}
	return r
}

func podEnded(p *store.Pod) bool {
	return p.Phase == string(corev1.PodFailed) || p.Phase == string(corev1.PodSucceeded)
}

// podAvailable reports whether p has been Ready for minReady seconds (by
// its Ready condition's lastTransitionTime), as Kubernetes counts
// availability.
func podAvailable(p *store.Pod, minReady int32, now time.Time) bool {
	if !p.Ready {
		return false
	}
	if minReady == 0 {
		return true
	}
	return !p.ReadySince.IsZero() && p.ReadySince.Time().Add(time.Duration(minReady)*time.Second).Before(now)
}

func int32Or(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// scaledValue resolves an int-or-percent against total; a percent rounds up
// or down. Manifests are validated, so a bad value cannot arrive here; it
// counts as 0.
func scaledValue(v *intstr.IntOrString, def intstr.IntOrString, total int32, roundUp bool) int32 {
	if v == nil {
		v = &def
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, int(total), roundUp)
	if err != nil || n < 0 {
		return 0
	}
	return int32(n)
}

func isRolling(d *appsv1.Deployment) bool {
	return d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType
}

// fenceposts are a rolling Deployment's maxSurge (rounded up) and
// maxUnavailable (rounded down), each 25% when not set. Both may not be
// zero: if rounding makes them so, one pod may be unavailable, as in
// Kubernetes (surging matters more).
func fenceposts(d *appsv1.Deployment) (surge, unavailable int32) {
	want := int32Or(d.Spec.Replicas, 1)
	var ms, mu *intstr.IntOrString
	if ru := d.Spec.Strategy.RollingUpdate; ru != nil {
		ms, mu = ru.MaxSurge, ru.MaxUnavailable
	}
	surge = scaledValue(ms, defaultRollingPercent, want, true)
	unavailable = scaledValue(mu, defaultRollingPercent, want, false)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}

func maxSurge(d *appsv1.Deployment) int32 {
	if !isRolling(d) {
		return 0
	}
	s, _ := fenceposts(d)
	return s
}

func maxUnavailable(d *appsv1.Deployment) int32 {
	want := int32Or(d.Spec.Replicas, 1)
	if !isRolling(d) || want == 0 {
		return 0
	}
	_, u := fenceposts(d)
	return min(u, want)
}

func progressDeadline(d *appsv1.Deployment) int32 {
	return int32Or(d.Spec.ProgressDeadlineSeconds, defaultProgressDeadline)
}

// hasProgressDeadline is false when the deadline is MaxInt32, Kubernetes'
// way to say "never".
func hasProgressDeadline(d *appsv1.Deployment) bool { return progressDeadline(d) != math.MaxInt32 }

// generationOf is the generation a status observes. Objects from Git carry
// none (no API server counts their updates); taking 1 for them, as the
// first generation in Kubernetes, lets an observedGeneration of 0 mean "not
// yet observed", which the CLI relies on since Git changes reset the status.
func generationOf(m *metav1.ObjectMeta) int64 { return max(m.Generation, 1) }

// conditionTime is now as Kubernetes stores it: to the second, so that a
// status read back from an annotation equals the one it was written from.
func conditionTime(now time.Time) metav1.Time { return metav1.NewTime(now.Truncate(time.Second)) }

// deploymentRollout is one Deployment's part of a pass.
type deploymentRollout struct {
	plan *clusterPlan
	now  time.Time
	o    *store.Object
	d    *appsv1.Deployment
	want int32
	hash string
	// status is Kubernetes' deployment.Status during a sync: the previous
	// status, with the conditions this pass set on the way.
	status appsv1.DeploymentStatus
	// rss are all the Deployment's ReplicaSets; newRS is the one of the
	// current template (nil until made).
	rss   []*ownedRS
	newRS *ownedRS
	// pruned are ReplicaSets deleted for revisionHistoryLimit.
	pruned []*ownedRS
}

// deployments runs the deployment controller over every Deployment and
// returns the ReplicaSets the ReplicaSet controller then runs (those from
// Git, and the Deployments' as this pass left them). Until the controller is
// warm it changes no Deployment's ReplicaSets: their replicas are rollout
// state that only the agents' reports can rebuild after a restart.
func deployments(plan *clusterPlan, objs []*store.Object, byKey map[string]*store.Object, podsByOwner map[string][]*store.Pod, pk *parking,
	deleted map[string]bool, deletePod func(*store.Pod, string), now time.Time, warm, autoRollback bool, hashes *hashMemo) []*store.Object {
	var run []*store.Object
	ownedBy := map[string][]*store.Object{}
	for _, o := range objs {
		if _, ok := o.Obj.(*appsv1.ReplicaSet); !ok {
			continue
		}
		if o.OwnerKey == "" {
			run = append(run, o)
			continue
		}
		if owner := byKey[o.OwnerKey]; owner != nil {
			if _, ok := owner.Obj.(*appsv1.Deployment); ok {
				ownedBy[o.OwnerKey] = append(ownedBy[o.OwnerKey], o)
				continue
			}
		}
		plan.deleteObjects = append(plan.deleteObjects, o.Key)
		for _, p := range podsByOwner[o.Key] {
			deletePod(p, "its ReplicaSet "+o.Name+" was removed with its owner "+o.OwnerKey)
		}
	}
	var orphans map[string]map[string][]*store.Pod
	if warm {
		orphans = orphanedReplicaSets(byKey, podsByOwner)
	}
	for _, o := range objs {
		d, ok := o.Obj.(*appsv1.Deployment)
		if !ok {
			continue
		}
		if !warm {
			run = append(run, ownedBy[o.Key]...)
			continue
		}
		x := &deploymentRollout{plan: plan, now: now, o: o, d: d, want: int32Or(d.Spec.Replicas, 1), hash: hashes.get(d)}
		if to := rolledBackTarget(o, d, x.hash, ownedBy[o.Key]); to != nil {
			// Rolled back (autorollback.go): the previous template, while
			// Git keeps the failed one.
			x.d, x.hash = withTemplateOf(d, to)
		}
		for _, rso := range ownedBy[o.Key] {
			r := newOwnedRS(rso, podsByOwner[rso.Key], deleted, now)
			r.parked = len(pk.byOwner[rso.Key])
			x.rss = append(x.rss, r)
		}
		x.reconstructReplicaSets(orphans[o.Key], deleted)
		x.sync()
		if x.d == d { // not already rolled back
			x.maybeRollBack(autoRollback)
		}
		delay := parkDelay(x.d)
		for _, r := range x.rss {
			if r.dirty {
				plan.upsertObjects = append(plan.upsertObjects, r.obj)
			}
			run = append(run, r.obj)
			if delay > 0 {
				pk.policy[r.obj.Key] = parkPolicy{delay: delay, deployment: o.Key, current: r == x.newRS}
			}
		}
		for _, r := range x.pruned {
			plan.deleteObjects = append(plan.deleteObjects, r.obj.Key)
		}
	}
	return run
}

// orphanedReplicaSets finds pods whose ReplicaSet the store lacks but whose
// Deployment exists: Deployment key → ReplicaSet key → pods. A ReplicaSet
// of a Deployment is named DEPLOYMENT-HASH and its pods carry HASH as their
// pod-template-hash label.
func orphanedReplicaSets(byKey map[string]*store.Object, podsByOwner map[string][]*store.Pod) map[string]map[string][]*store.Pod {
	out := map[string]map[string][]*store.Pod{}
	for key, ps := range podsByOwner {
		rest, ok := strings.CutPrefix(key, "ReplicaSet/")
		if !ok || byKey[key] != nil || len(ps) == 0 {
			continue
		}
		ns, name, ok := strings.Cut(rest, "/")
		hash := ps[0].Labels()[podTemplateHashLabel]
		if !ok || hash == "" || !strings.HasSuffix(name, "-"+hash) {
			continue
		}
		dk := "Deployment/" + ns + "/" + strings.TrimSuffix(name, "-"+hash)
		if o := byKey[dk]; o == nil {
			continue
		} else if _, ok := o.Obj.(*appsv1.Deployment); !ok {
			continue
		}
		if out[dk] == nil {
			out[dk] = map[string][]*store.Pod{}
		}
		out[dk][key] = ps
	}
	return out
}

// reconstructReplicaSets rebuilds the Deployment's ReplicaSets that the
// store lost (the controller restarted: they lived only in its memory) from
// the pods the agents reported and the start-up grace adopted: each gets
// as many replicas as it has live pods, so the rollout goes on from where it
// was instead of replacing every old pod at once. The ReplicaSet of the
// current template takes the Deployment's template; an old one takes the
// spec of its oldest pod.
//
// Revision numbers are lost with the store. The old ReplicaSets are
// numbered in the order of their oldest live pod's creation time (then by
// name), after the highest revision the Deployment still has: a ReplicaSet
// creates its pods when it is scaled up, after it was made, so its oldest
// surviving pod is the best witness of its age that remains; the
// ReplicaSet of the current template then gets the next number, as a new
// one would. Only the order of revisions matters to the controller (the
// newest is the current template's; history is pruned oldest first). Old
// ReplicaSets without pods (history) are not rebuilt: there is nothing to
// rebuild them from.
//
// The Deployment's last status is lost too, and with it the time of its
// last progress: the progress deadline counts again from the restart
// (FoundNewReplicaSet), which may fail a stuck rollout late, never early.
func (x *deploymentRollout) reconstructReplicaSets(groups map[string][]*store.Pod, deleted map[string]bool) {
	if len(groups) == 0 {
		return
	}
	sel, err := metav1.LabelSelectorAsSelector(x.d.Spec.Selector)
	if err != nil {
		return
	}
	type group struct {
		key    string
		live   []*store.Pod
		oldest time.Time
	}
	var gs []group
	for key, ps := range groups {
		g := group{key: key}
		for _, p := range ps {
			if deleted[p.Key] || podEnded(p) || !sel.Matches(labels.Set(p.Labels())) {
				continue
			}
			g.live = append(g.live, p)
			if t := p.Created.Time(); g.oldest.IsZero() || t.Before(g.oldest) {
				g.oldest = t
			}
		}
		if len(g.live) > 0 {
			gs = append(gs, g)
		}
	}
	sort.Slice(gs, func(i, j int) bool {
		if !gs[i].oldest.Equal(gs[j].oldest) {
			return gs[i].oldest.Before(gs[j].oldest)
		}
		return gs[i].key < gs[j].key
	})
	var rev int64
	for _, r := range x.rss {
		rev = max(rev, r.revision())
	}
	current := "ReplicaSet/" + x.d.Namespace + "/" + x.d.Name + "-" + x.hash
	for _, g := range gs {
		var obj *store.Object
		if g.key == current {
			obj = replicaSetFor(x.d, x.o, x.hash, g.oldest)
		} else {
			p := g.live[0]
			for _, q := range g.live {
				if q.Created.Before(p.Created) {
					p = q
				}
			}
			obj = replicaSetFromPod(x.d, x.o, p.Base, g.oldest)
		}
		rs := obj.Obj.(*appsv1.ReplicaSet)
		n := int32(len(g.live))
		rs.Spec.Replicas = &n
		rs.Spec.MinReadySeconds = x.d.Spec.MinReadySeconds
		msg := fmt.Sprintf("Rebuilt replica set %s with %d replicas from the pods its nodes reported", rs.Name, n)
		if g.key != current {
			rev++
			rs.Annotations[revisionAnnotation] = strconv.FormatInt(rev, 10)
			msg += fmt.Sprintf(" (revision %d)", rev)
		}
		r := newOwnedRS(obj, g.live, deleted, x.now)
		r.dirty = true
		x.rss = append(x.rss, r)
		x.event(corev1.EventTypeNormal, "ReplicaSetRebuilt", msg)
	}
}

// replicaSetFromPod is an old ReplicaSet of d rebuilt from one of its pods
// (its Base: labels, annotations and spec).
func replicaSetFromPod(d *appsv1.Deployment, o *store.Object, p *corev1.Pod, created time.Time) *store.Object {
	hash := p.Labels[podTemplateHashLabel]
	spec := *p.Spec.DeepCopy()
	spec.NodeName = ""
	tmpl := corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: maps.Clone(p.Labels), Annotations: maps.Clone(p.Annotations)}, Spec: spec}
	return newReplicaSetObject(d, o, hash, tmpl, created)
}

// sync is Kubernetes' syncDeployment for one Deployment.
func (x *deploymentRollout) sync() {
	x.status = x.previousStatus()
	x.checkPausedConditions()
	if x.d.Spec.Paused || x.scalingEvent() {
		x.syncScaling()
		return
	}
	if isRolling(x.d) {
		x.rolloutRolling()
	} else {
		x.rolloutRecreate()
	}
}

// previousStatus is the Deployment's status as the last pass left it: on
// its row, or, when Git changed the Deployment since (which resets the
// row's status), on its ReplicaSet of the newest revision.
func (x *deploymentRollout) previousStatus() appsv1.DeploymentStatus {
	if s, ok := x.o.Status.(*appsv1.DeploymentStatus); ok && s != nil {
		return *s.DeepCopy()
	}
	var st appsv1.DeploymentStatus
	if r := x.newest(); r != nil {
		if raw := r.rs.Annotations[rolloutStatusAnnotation]; raw != "" {
			_ = json.Unmarshal([]byte(raw), &st) // written by finish; a bad one is a fresh start
		}
	}
	return st
}

// newest is the ReplicaSet of the highest revision.
func (x *deploymentRollout) newest() *ownedRS {
	var n *ownedRS
	for _, r := range x.rss {
		if n == nil || r.revision() > n.revision() {
			n = r
		}
	}
	return n
}

// old are the ReplicaSets other than the new one, oldest first (by creation,
// then name), the order Kubernetes scales them down in.
func (x *deploymentRollout) old() []*ownedRS {
	var out []*ownedRS
	for _, r := range x.rss {
		if r != x.newRS {
			out = append(out, r)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].created().Equal(out[j].created()) {
			return out[i].created().Before(out[j].created())
		}
		return out[i].rs.Name < out[j].rs.Name
	})
	return out
}

func (x *deploymentRollout) event(typ, reason, msg string) {
	x.plan.events = append(x.plan.events, &store.Event{ObjectKey: x.o.Key, Type: typ, Reason: reason, Message: msg})
}

// findNewReplicaSet finds the ReplicaSet of the current template (making it
// when create is set) and gives it the next revision: the highest of the
// others plus one. A ReplicaSet whose template comes back (a revert in Git)
// is found by its name, re-used, and renumbered so; its earlier revisions
// are kept in the revision-history annotation, as Kubernetes does.
func (x *deploymentRollout) findNewReplicaSet(create bool) {
	name := x.d.Name + "-" + x.hash
	x.newRS = nil
	var maxOld int64
	for _, r := range x.rss {
		if r.rs.Name == name {
			x.newRS = r
			continue
		}
		maxOld = max(maxOld, r.revision())
	}
	next := strconv.FormatInt(maxOld+1, 10)
	if r := x.newRS; r != nil {
		if cur := r.revision(); cur < maxOld+1 || r.rs.Spec.MinReadySeconds != x.d.Spec.MinReadySeconds || !x.annotationsCopied(r) {
			rs := r.edit()
			if cur < maxOld+1 {
				if old := rs.Annotations[revisionAnnotation]; old != "" {
					if h := rs.Annotations[revisionHistoryAnnotation]; h != "" {
						rs.Annotations[revisionHistoryAnnotation] = h + "," + old
					} else {
						rs.Annotations[revisionHistoryAnnotation] = old
					}
				}
				rs.Annotations[revisionAnnotation] = next
			}
			rs.Spec.MinReadySeconds = x.d.Spec.MinReadySeconds
			x.copyAnnotations(rs)
		}
		if hasProgressDeadline(x.d) && deploymentCondition(&x.status, appsv1.DeploymentProgressing) == nil {
			setDeploymentCondition(&x.status, newDeploymentCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonFoundNewRS,
				fmt.Sprintf("Found new replica set %q", r.rs.Name), x.now))
		}
		return
	}
	if !create {
		return
	}
	obj := replicaSetFor(x.d, x.o, x.hash, x.now)
	rs := obj.Obj.(*appsv1.ReplicaSet)
	rs.Annotations[revisionAnnotation] = next
	rs.Spec.MinReadySeconds = x.d.Spec.MinReadySeconds
	x.copyAnnotations(rs)
	zero := int32(0)
	rs.Spec.Replicas = &zero
	r := &ownedRS{obj: obj, rs: rs, dirty: true}
	x.rss = append(x.rss, r)
	x.newRS = r
	n := x.newRSNewReplicas()
	rs.Spec.Replicas = &n
	x.setReplicasAnnotations(rs)
	if n > 0 {
		x.event(corev1.EventTypeNormal, "ScalingReplicaSet", fmt.Sprintf("Scaled up replica set %s to %d", rs.Name, n))
	}
	if hasProgressDeadline(x.d) {
		setDeploymentCondition(&x.status, newDeploymentCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonNewRSCreated,
			fmt.Sprintf("Created new replica set %q", rs.Name), x.now))
	}
}

// skipAnnotations are the Deployment's annotations not copied to its
// ReplicaSets (Kubernetes' list, plus the one Keelson keeps there).
var skipAnnotations = map[string]bool{
	corev1.LastAppliedConfigAnnotation: true, revisionAnnotation: true, revisionHistoryAnnotation: true,
	desiredReplicasAnnotation: true, maxReplicasAnnotation: true, rolloutStatusAnnotation: true,
	"deprecated.deployment.rollback.to": true,
}

// copyAnnotations copies the Deployment's annotations (kubernetes.io/change-cause
// among them) to its new ReplicaSet, as Kubernetes does for rollout history.
func (x *deploymentRollout) copyAnnotations(rs *appsv1.ReplicaSet) {
	for k, v := range x.d.Annotations {
		if !skipAnnotations[k] {
			rs.Annotations[k] = v
		}
	}
}

func (x *deploymentRollout) annotationsCopied(r *ownedRS) bool {
	for k, v := range x.d.Annotations {
		if !skipAnnotations[k] && r.rs.Annotations[k] != v {
			return false
		}
	}
	return true
}

func (x *deploymentRollout) setReplicasAnnotations(rs *appsv1.ReplicaSet) {
	rs.Annotations[desiredReplicasAnnotation] = strconv.Itoa(int(x.want))
	rs.Annotations[maxReplicasAnnotation] = strconv.Itoa(int(x.want + maxSurge(x.d)))
}

func (x *deploymentRollout) replicasAnnotationsCurrent(r *ownedRS) bool {
	return r.rs.Annotations[desiredReplicasAnnotation] == strconv.Itoa(int(x.want)) &&
		r.rs.Annotations[maxReplicasAnnotation] == strconv.Itoa(int(x.want+maxSurge(x.d)))
}

// scale sets a ReplicaSet's replicas and records it; it reports whether the
// size changed.
func (x *deploymentRollout) scale(r *ownedRS, n int32) bool {
	from := r.replicas()
	if from == n && x.replicasAnnotationsCurrent(r) {
		return false
	}
	rs := r.edit()
	rs.Spec.Replicas = &n
	x.setReplicasAnnotations(rs)
	if from == n {
		return false
	}
	dir := "up"
	if n < from {
		dir = "down"
	}
	x.event(corev1.EventTypeNormal, "ScalingReplicaSet", fmt.Sprintf("Scaled %s replica set %s to %d", dir, rs.Name, n))
	return true
}

// specReplicas is the sum of the ReplicaSets' replicas: the pods the
// Deployment will have once the ReplicaSet controller has caught up.
func specReplicas(rss []*ownedRS) int32 {
	var n int32
	for _, r := range rss {
		n += r.replicas()
	}
	return n
}

func availableReplicas(rss []*ownedRS) int32 {
	var n int32
	for _, r := range rss {
		n += r.available
	}
	return n
}

// newRSNewReplicas is how far the new ReplicaSet may grow now: up to the
// Deployment's replicas while all ReplicaSets together stay within
// replicas+maxSurge (RollingUpdate), or all at once (Recreate).
func (x *deploymentRollout) newRSNewReplicas() int32 {
	if !isRolling(x.d) {
		return x.want
	}
	cur := x.newRS.replicas()
	total := specReplicas(x.rss)
	limit := x.want + maxSurge(x.d)
	if total >= limit {
		return cur
	}
	return cur + min(limit-total, x.want-cur)
}

// rolloutRolling is one step of a RollingUpdate: scale the new ReplicaSet
// up within maxSurge, or else the old ones down within maxUnavailable
// (unhealthy pods first), then prune history once the rollout is complete.
func (x *deploymentRollout) rolloutRolling() {
	x.findNewReplicaSet(true)
	if x.reconcileNewReplicaSet() || x.reconcileOldReplicaSets() {
		x.syncRolloutStatus()
		return
	}
	if deploymentComplete(x.want, generationOf(&x.d.ObjectMeta), &x.status) {
		x.cleanupDeployment()
	}
	x.syncRolloutStatus()
}

func (x *deploymentRollout) reconcileNewReplicaSet() bool {
	r := x.newRS
	switch cur := r.replicas(); {
	case cur == x.want:
		return false
	case cur > x.want:
		return x.scale(r, x.want)
	}
	return x.scale(r, x.newRSNewReplicas())
}

// reconcileOldReplicaSets scales the old ReplicaSets down by as much as
// keeps replicas−maxUnavailable pods available, counting the new
// ReplicaSet's unavailable pods against it so that a broken new version
// never takes more old pods down.
func (x *deploymentRollout) reconcileOldReplicaSets() bool {
	old := x.old()
	if specReplicas(old) == 0 {
		return false
	}
	minAvailable := x.want - maxUnavailable(x.d)
	newUnavailable := x.newRS.replicas() - x.newRS.available
	maxScaledDown := specReplicas(x.rss) - minAvailable - newUnavailable
	if maxScaledDown <= 0 {
		return false
	}
	// Unhealthy old pods go first: they cost no availability, and left
	// alone they would block the rollout.
	var cleaned int32
	for _, r := range old {
		if cleaned >= maxScaledDown {
			break
		}
		n := r.replicas()
		if n == 0 || n <= r.available {
			continue
		}
		down := min(maxScaledDown-cleaned, n-r.available)
		x.scale(r, n-down)
		cleaned += down
	}
	// Then available ones, down to minAvailable.
	var scaled int32
	if avail := availableReplicas(x.rss); avail > minAvailable {
		todo := avail - minAvailable
		for _, r := range old {
			if scaled >= todo {
				break
			}
			n := r.replicas()
			if n == 0 {
				continue
			}
			down := min(n, todo-scaled)
			x.scale(r, n-down)
			scaled += down
		}
	}
	return cleaned+scaled > 0
}

// rolloutRecreate scales every old ReplicaSet to zero, waits until their
// pods are gone, then scales the new one up at once.
func (x *deploymentRollout) rolloutRecreate() {
	// The new ReplicaSet is not made before the old pods are gone, so that
	// nothing scales up before the scale-down.
	x.findNewReplicaSet(false)
	scaled := false
	for _, r := range x.old() {
		if r.replicas() > 0 {
			x.scale(r, 0)
			scaled = true
		}
	}
	if scaled {
		x.syncRolloutStatus()
		return
	}
	for _, r := range x.old() {
		if len(r.live) > 0 {
			x.syncRolloutStatus()
			return
		}
	}
	if x.newRS == nil {
		x.findNewReplicaSet(true)
	}
	x.scale(x.newRS, x.want)
	if deploymentComplete(x.want, generationOf(&x.d.ObjectMeta), &x.status) {
		x.cleanupDeployment()
	}
	x.syncRolloutStatus()
}

// scalingEvent reports whether the Deployment's replicas changed since its
// active ReplicaSets were last sized (their desired-replicas annotation).
func (x *deploymentRollout) scalingEvent() bool {
	x.findNewReplicaSet(false)
	for _, r := range x.rss {
		if r.replicas() == 0 {
			continue
		}
		if v, ok := r.rs.Annotations[desiredReplicasAnnotation]; ok {
			if n, err := strconv.Atoi(v); err == nil && int32(n) != x.want {
				return true
			}
		}
	}
	return false
}

// syncScaling handles a change of replicas (and a paused Deployment): no
// rollout step, only scaling.
func (x *deploymentRollout) syncScaling() {
	x.findNewReplicaSet(false)
	x.scaleProportionally()
	if x.d.Spec.Paused {
		x.cleanupDeployment()
	}
	x.finish(x.calculateStatus())
}

// scaleProportionally spreads a change of the Deployment's replicas over its
// active ReplicaSets in proportion to their sizes, so that a scale during a
// rollout keeps both bounds; leftovers go to the largest one.
func (x *deploymentRollout) scaleProportionally() {
	var active []*ownedRS
	for _, r := range x.rss {
		if r.replicas() > 0 {
			active = append(active, r)
		}
	}
	switch {
	case len(active) <= 1:
		target := x.newRS
		if len(active) == 1 {
			target = active[0]
		} else if target == nil {
			old := x.old()
			if len(old) == 0 {
				return
			}
			target = old[len(old)-1]
		}
		x.scale(target, x.want)
		return
	case x.newRS != nil && x.newRS.rs.Annotations[desiredReplicasAnnotation] == strconv.Itoa(int(x.want)) &&
		x.newRS.replicas() == x.want && x.newRS.available == x.want:
		// The new ReplicaSet is saturated: the old ones go.
		for _, r := range x.old() {
			if r.replicas() > 0 {
				x.scale(r, 0)
			}
		}
		return
	case !isRolling(x.d):
		return
	}
	allowed := int32(0)
	if x.want > 0 {
		allowed = x.want + maxSurge(x.d)
	}
	toAdd := allowed - specReplicas(active)
	created := func(r *ownedRS) time.Time { return r.created() }
	sort.SliceStable(active, func(i, j int) bool {
		a, b := active[i], active[j]
		if a.replicas() != b.replicas() {
			return a.replicas() > b.replicas()
		}
		if toAdd > 0 { // when growing, newer first; when shrinking, older first
			return created(a).After(created(b))
		}
		return created(a).Before(created(b))
	})
	sizes := make([]int32, len(active))
	var added int32
	for i, r := range active {
		sizes[i] = r.replicas()
		if toAdd != 0 {
			p := x.proportion(r, toAdd, added)
			sizes[i] += p
			added += p
		}
	}
	if toAdd != 0 {
		sizes[0] = max(sizes[0]+toAdd-added, 0)
	}
	for i, r := range active {
		x.scale(r, sizes[i])
	}
}

// proportion is a ReplicaSet's share of toAdd (of which added is given out
// already), from its size against the Deployment's size when it was last
// scaled (max-replicas annotation).
func (x *deploymentRollout) proportion(r *ownedRS, toAdd, added int32) int32 {
	if r.replicas() == 0 || toAdd == added {
		return 0
	}
	var fraction int32
	if x.want == 0 {
		fraction = -r.replicas()
	} else {
		base, err := strconv.Atoi(r.rs.Annotations[maxReplicasAnnotation])
		if err != nil || base <= 0 {
			base = int(x.status.Replicas)
		}
		if base <= 0 {
			base = int(r.replicas())
		}
		size := float64(r.replicas()) * float64(x.want+maxSurge(x.d)) / float64(base)
		fraction = int32(math.Round(size)) - r.replicas()
	}
	left := toAdd - added
	if toAdd > 0 {
		return min(fraction, left)
	}
	return max(fraction, left)
}

// cleanupDeployment deletes the oldest old ReplicaSets beyond
// revisionHistoryLimit, those with no replicas and no pods (parked ones
// included: a revert takes them back).
func (x *deploymentRollout) cleanupDeployment() {
	limit := int32Or(x.d.Spec.RevisionHistoryLimit, defaultRevisionHistoryLimit)
	old := x.old()
	diff := int32(len(old)) - limit
	if diff <= 0 {
		return
	}
	sort.SliceStable(old, func(i, j int) bool {
		if old[i].revision() != old[j].revision() {
			return old[i].revision() < old[j].revision()
		}
		return old[i].created().Before(old[j].created())
	})
	gone := map[*ownedRS]bool{}
	for _, r := range old[:diff] {
		if r.replicas() != 0 || len(r.live) != 0 || r.parked != 0 {
			continue
		}
		gone[r] = true
		x.pruned = append(x.pruned, r)
	}
	var keep []*ownedRS
	for _, r := range x.rss {
		if !gone[r] {
			keep = append(keep, r)
		}
	}
	x.rss = keep
}

// checkPausedConditions marks a paused Deployment (and one resumed), so
// that time spent paused does not count against its progress deadline.
func (x *deploymentRollout) checkPausedConditions() {
	if !hasProgressDeadline(x.d) {
		return
	}
	cond := deploymentCondition(&x.status, appsv1.DeploymentProgressing)
	if cond != nil && cond.Reason == reasonTimedOut {
		return
	}
	paused := cond != nil && cond.Reason == reasonPaused
	switch {
	case x.d.Spec.Paused && !paused:
		setDeploymentCondition(&x.status, newDeploymentCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonPaused, "Deployment is paused", x.now))
	case !x.d.Spec.Paused && paused:
		setDeploymentCondition(&x.status, newDeploymentCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, reasonResumed, "Deployment is resumed", x.now))
	}
}

// calculateStatus is the Deployment's status from its ReplicaSets: pod
// counts as the pass found them, replicas as it leaves them.
func (x *deploymentRollout) calculateStatus() appsv1.DeploymentStatus {
	st := appsv1.DeploymentStatus{ObservedGeneration: generationOf(&x.d.ObjectMeta)}
	for _, r := range x.rss {
		st.Replicas += int32(len(r.live))
		st.ReadyReplicas += r.ready
		st.AvailableReplicas += r.available
	}
	if x.newRS != nil {
		st.UpdatedReplicas = int32(len(x.newRS.live))
	}
	st.UnavailableReplicas = max(specReplicas(x.rss)-st.AvailableReplicas, 0)
	st.Conditions = append([]appsv1.DeploymentCondition(nil), x.status.Conditions...)
	if st.AvailableReplicas >= x.want-maxUnavailable(x.d) {
		setDeploymentCondition(&st, newDeploymentCondition(appsv1.DeploymentAvailable, corev1.ConditionTrue, reasonMinAvailable, "Deployment has minimum availability.", x.now))
	} else {
		setDeploymentCondition(&st, newDeploymentCondition(appsv1.DeploymentAvailable, corev1.ConditionFalse, reasonMinUnavailable, "Deployment does not have minimum availability.", x.now))
	}
	return st
}

// syncRolloutStatus computes the status with the Progressing condition:
// complete, progressing (its lastUpdateTime moves), or past the deadline.
func (x *deploymentRollout) syncRolloutStatus() {
	st := x.calculateStatus()
	if !hasProgressDeadline(x.d) {
		removeDeploymentCondition(&st, appsv1.DeploymentProgressing)
	}
	cur := deploymentCondition(&x.status, appsv1.DeploymentProgressing)
	complete := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == reasonNewRSAvailable
	if hasProgressDeadline(x.d) && !complete {
		name := ""
		if x.newRS != nil {
			name = x.newRS.rs.Name
		}
		msg := func(what string) string {
			if name == "" {
				return fmt.Sprintf("Deployment %q %s.", x.d.Name, what)
			}
			return fmt.Sprintf("ReplicaSet %q %s.", name, what)
		}
		switch {
		case deploymentComplete(x.want, generationOf(&x.d.ObjectMeta), &st):
			setDeploymentCondition(&st, newDeploymentCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonNewRSAvailable, msg("has successfully progressed"), x.now))
		case deploymentProgressing(&x.status, &st):
			c := newDeploymentCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, reasonRSUpdated, msg("is progressing"), x.now)
			if cur != nil {
				if cur.Status == corev1.ConditionTrue {
					c.LastTransitionTime = cur.LastTransitionTime
				}
				removeDeploymentCondition(&st, appsv1.DeploymentProgressing)
			}
			setDeploymentCondition(&st, c)
		case x.timedOut(&st):
			if c := deploymentCondition(&st, appsv1.DeploymentProgressing); c.Reason != reasonTimedOut {
				x.event(corev1.EventTypeWarning, reasonTimedOut, fmt.Sprintf("%s No progress for %ds (progressDeadlineSeconds): the rollout goes no further and the old pods keep serving.",
					msg("has timed out progressing"), progressDeadline(x.d)))
			}
			setDeploymentCondition(&st, newDeploymentCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, reasonTimedOut, msg("has timed out progressing"), x.now))
		}
	}
	x.finish(st)
}

// timedOut reports whether no progress happened for progressDeadlineSeconds
// since the Progressing condition's lastUpdateTime.
func (x *deploymentRollout) timedOut(st *appsv1.DeploymentStatus) bool {
	c := deploymentCondition(st, appsv1.DeploymentProgressing)
	switch {
	case c == nil || c.Reason == reasonNewRSAvailable:
		return false
	case c.Reason == reasonTimedOut:
		return true
	}
	return c.LastUpdateTime.Add(time.Duration(progressDeadline(x.d)) * time.Second).Before(x.now)
}

// finish writes the status (and the revision annotation) to the
// Deployment's row, and keeps the status on the ReplicaSet of the newest
// revision, where it survives a change of the Deployment in Git.
func (x *deploymentRollout) finish(st appsv1.DeploymentStatus) {
	prev, _ := x.o.Status.(*appsv1.DeploymentStatus)
	same := prev != nil && equality.Semantic.DeepEqual(*prev, st)
	// The annotation was written with the row's status: unless either
	// changed, it holds st already.
	if r := x.newest(); r != nil && (!same || r.dirty || r.rs.Annotations[rolloutStatusAnnotation] == "") {
		if raw, err := json.Marshal(st); err == nil && r.rs.Annotations[rolloutStatusAnnotation] != string(raw) {
			r.edit().Annotations[rolloutStatusAnnotation] = string(raw)
		}
	}
	rev := ""
	if x.newRS != nil {
		rev = x.newRS.rs.Annotations[revisionAnnotation]
	}
	newRev := rev != "" && x.d.Annotations[revisionAnnotation] != rev
	if !newRev && same {
		return
	}
	c := *x.o
	if newRev {
		d := *x.d
		d.Annotations = maps.Clone(x.d.Annotations)
		if d.Annotations == nil {
			d.Annotations = map[string]string{}
		}
		d.Annotations[revisionAnnotation] = rev
		c.Obj = &d
	}
	c.Status = &st
	x.plan.upsertObjects = append(x.plan.upsertObjects, &c)
}

// deploymentComplete: every replica is updated and available, and the
// status observed the current generation.
func deploymentComplete(want int32, gen int64, st *appsv1.DeploymentStatus) bool {
	return st.UpdatedReplicas == want && st.Replicas == want && st.AvailableReplicas == want && st.ObservedGeneration >= gen
}

// deploymentProgressing: more pods updated, fewer old ones, more ready or
// more available than before.
func deploymentProgressing(prev, st *appsv1.DeploymentStatus) bool {
	return st.UpdatedReplicas > prev.UpdatedReplicas ||
		st.Replicas-st.UpdatedReplicas < prev.Replicas-prev.UpdatedReplicas ||
		st.ReadyReplicas > prev.ReadyReplicas ||
		st.AvailableReplicas > prev.AvailableReplicas
}

func newDeploymentCondition(t appsv1.DeploymentConditionType, s corev1.ConditionStatus, reason, msg string, now time.Time) appsv1.DeploymentCondition {
	at := conditionTime(now)
	return appsv1.DeploymentCondition{Type: t, Status: s, Reason: reason, Message: msg, LastUpdateTime: at, LastTransitionTime: at}
}

func deploymentCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) *appsv1.DeploymentCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// setDeploymentCondition sets c unless a condition of its type already has
// its status and reason; a condition whose status stays keeps its
// lastTransitionTime.
func setDeploymentCondition(st *appsv1.DeploymentStatus, c appsv1.DeploymentCondition) {
	cur := deploymentCondition(st, c.Type)
	if cur != nil && cur.Status == c.Status && cur.Reason == c.Reason {
		return
	}
	if cur != nil && cur.Status == c.Status {
		c.LastTransitionTime = cur.LastTransitionTime
	}
	removeDeploymentCondition(st, c.Type)
	st.Conditions = append(st.Conditions, c)
}

func removeDeploymentCondition(st *appsv1.DeploymentStatus, t appsv1.DeploymentConditionType) {
	var out []appsv1.DeploymentCondition
	for _, c := range st.Conditions {
		if c.Type != t {
			out = append(out, c)
		}
	}
	st.Conditions = out
}
