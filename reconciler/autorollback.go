package reconciler

import (
	"fmt"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/store"
)

// Automatic rollback: when a Deployment's rollout fails (its progress
// deadline passes) and rollback is on for it (the controller's
// --auto-rollback, or the annotation AnnotationAutoRollback "true"/"false"
// on the Deployment), the controller returns it to the template of its
// previous ReplicaSet, and keeps it there while the Deployment in Git
// stays as it is: the failed template is not tried again until a new
// commit changes the object. Git stays the record: the failed ReplicaSet
// carries what happened, which status and describe show.
const (
	// AnnotationAutoRollback on a Deployment turns automatic rollback on
	// ("true") or off ("false") for it, over the controller's default.
	AnnotationAutoRollback = "keelson.dev/auto-rollback"
	// rolledBackAnnotation on a failed ReplicaSet is the hash of the
	// Deployment (as Git had it) whose rollout failed; rolledBackToAnnotation
	// names the ReplicaSet it returned to; rolledBackReasonAnnotation says why.
	rolledBackAnnotation       = api.AnnotationRolledBackAt
	rolledBackToAnnotation     = api.AnnotationRolledBackTo
	rolledBackReasonAnnotation = api.AnnotationRolledBackReason
)

// autoRollbackOn reports whether rollback is on for d.
func autoRollbackOn(d *appsv1.Deployment, def bool) bool {
	if v, ok := d.Annotations[AnnotationAutoRollback]; ok {
		b, err := strconv.ParseBool(v)
		return err == nil && b
	}
	return def
}

// rolledBackTarget is, for a Deployment whose rollout was rolled back while
// it is unchanged in Git, the ReplicaSet it runs instead of its template's
// (whose hash is hash).
func rolledBackTarget(o *store.Object, d *appsv1.Deployment, hash string, owned []*store.Object) *appsv1.ReplicaSet {
	failed := d.Name + "-" + hash
	var to string
	for _, rso := range owned {
		rs := rso.Obj.(*appsv1.ReplicaSet)
		if rs.Name == failed && rs.Annotations[rolledBackAnnotation] == o.Hash {
			to = rs.Annotations[rolledBackToAnnotation]
		}
	}
	if to == "" {
		return nil
	}
	for _, rso := range owned {
		if rs := rso.Obj.(*appsv1.ReplicaSet); rs.Name == to {
			return rs
		}
	}
	return nil
}

// withTemplateOf is d running rs's template: what a rolled-back Deployment
// rolls to (its ReplicaSet is found again by its hash).
func withTemplateOf(d *appsv1.Deployment, rs *appsv1.ReplicaSet) (*appsv1.Deployment, string) {
	c := *d
	c.Spec.Template = *rs.Spec.Template.DeepCopy()
	hash := rs.Labels[podTemplateHashLabel]
	delete(c.Spec.Template.Labels, podTemplateHashLabel)
	if len(c.Spec.Template.Labels) == 0 {
		c.Spec.Template.Labels = nil
	}
	return &c, hash
}

// maybeRollBack, after a pass of a Deployment's rollout, rolls a failed
// rollout back when rollback is on: it marks the failed ReplicaSet with the
// Deployment's hash and the ReplicaSet of the previous revision, which the
// next passes roll to.
func (x *deploymentRollout) maybeRollBack(def bool) {
	if !autoRollbackOn(x.d, def) || x.newRS == nil {
		return
	}
	c := deploymentCondition(&x.status, appsv1.DeploymentProgressing)
	if c == nil || c.Reason != reasonTimedOut || x.newRS.rs.Annotations[rolledBackAnnotation] == x.o.Hash {
		return
	}
	var prev *ownedRS
	for _, r := range x.rss {
		if r != x.newRS && (prev == nil || r.revision() > prev.revision()) {
			prev = r
		}
	}
	if prev == nil {
		return // nothing to go back to
	}
	rs := x.newRS.edit()
	rs.Annotations[rolledBackAnnotation] = x.o.Hash
	rs.Annotations[rolledBackToAnnotation] = prev.rs.Name
	rs.Annotations[rolledBackReasonAnnotation] = c.Message
	x.event(corev1.EventTypeWarning, "RolledBack", fmt.Sprintf("rollout of replica set %s failed (%s): rolled back to %s (revision %d); Git still has the failed template, which is not tried again until a new commit changes the Deployment",
		rs.Name, c.Message, prev.rs.Name, prev.revision()))
}
