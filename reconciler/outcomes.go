package reconciler

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/store"
)

// workloadTemplate is the pod template of a workload, and its hash: the
// Deployment's ReplicaSet hash, or a hash of the template for DaemonSets and
// StatefulSets. ok is false for other kinds.
func workloadTemplate(o *store.Object) (tmpl *corev1.PodTemplateSpec, hash string, ok bool) {
	switch x := o.Obj.(type) {
	case *appsv1.Deployment:
		return &x.Spec.Template, templateHash(x), true
	case *appsv1.DaemonSet:
		return &x.Spec.Template, revisionHash(&x.Spec.Template), true
	case *appsv1.StatefulSet:
		return &x.Spec.Template, revisionHash(&x.Spec.Template), true
	}
	return nil, "", false
}

// rolloutsOf lists the workloads a plan adds or changes, for the
// revision's record: each starts Progressing.
func rolloutsOf(current []*store.Object, p *Plan) []store.Rollout {
	prev := make(map[string]*store.Object, len(current))
	for _, o := range current {
		prev[o.Key] = o
	}
	var out []store.Rollout
	for _, o := range p.Upserts {
		tmpl, hash, ok := workloadTemplate(o)
		if !ok {
			continue
		}
		old := prev[o.Key]
		if old != nil && old.Hash == o.Hash {
			continue // moved in the repository, not changed
		}
		r := store.Rollout{Object: o.Key, Hash: o.Hash, TemplateHash: hash, Outcome: store.RolloutProgressing}
		for _, c := range tmpl.Spec.Containers {
			r.Images = append(r.Images, c.Image)
		}
		if old != nil {
			if _, h, ok := workloadTemplate(old); ok {
				r.FromTemplate = h
			}
		}
		out = append(out, r)
	}
	return out
}

// maxTrackedRevisions is how many recent revisions the loop follows.
const maxTrackedRevisions = 20

// computeOutcomes follows the rollouts of recent revisions from commit to
// running: when all the commit's pods are scheduled, started and ready, and
// whether the rollout completed, failed, or was superseded or rolled back
// by a later commit. It returns the revisions whose record changed.
func computeOutcomes(revs []*store.Revision, objs []*store.Object, pods []*store.Pod, now time.Time) []*store.Revision {
	var (
		byKey       map[string]*store.Object
		podsByOwner map[string][]*store.Pod
		out         []*store.Revision
	)
	for i, rev := range revs {
		if i >= maxTrackedRevisions {
			break
		}
		if rev.Status != store.RevisionApplied || rev.Health.Final() && rev.Health != "" || len(rev.Rollouts) == 0 {
			continue
		}
		if byKey == nil {
			byKey = make(map[string]*store.Object, len(objs))
			for _, o := range objs {
				byKey[o.Key] = o
			}
			podsByOwner = groupByOwner(pods, func(p *store.Pod) bool { return !p.Terminating() })
		}
		rolls := make([]store.Rollout, len(rev.Rollouts))
		copy(rolls, rev.Rollouts)
		changed := false
		for j := range rolls {
			r := &rolls[j]
			if r.Outcome.Final() {
				continue
			}
			next := followRollout(*r, byKey[r.Object], podsByOwner, now)
			if !sameRollout(next, *r) {
				*r = next
				changed = true
			}
		}
		health := sumHealth(rolls)
		if !changed && health == rev.Health {
			continue
		}
		c := *rev
		c.Rollouts, c.Health = rolls, health
		out = append(out, &c)
	}
	return out
}

func sameRollout(a, b store.Rollout) bool {
	return a.Outcome == b.Outcome && a.Reason == b.Reason && a.Scheduled.Equal(b.Scheduled) && a.Started.Equal(b.Started) &&
		a.Ready.Equal(b.Ready) && a.Finished.Equal(b.Finished)
}

// followRollout is one rollout's next state.
func followRollout(r store.Rollout, o *store.Object, podsByOwner map[string][]*store.Pod, now time.Time) store.Rollout {
	finish := func(out store.RolloutOutcome, reason string) store.Rollout {
		r.Outcome, r.Reason, r.Finished = out, reason, now
		return r
	}
	if o == nil {
		return finish(store.RolloutSuperseded, "the object was removed from Git")
	}
	if o.Hash != r.Hash {
		if _, h, ok := workloadTemplate(o); ok && r.FromTemplate != "" && h == r.FromTemplate && h != r.TemplateHash {
			return finish(store.RolloutRolledBack, "a later commit brought the previous template back")
		}
		return finish(store.RolloutSuperseded, "a later commit changed the object before the rollout finished")
	}
	var (
		want          int32
		mine          []*store.Pod
		healthy       bool
		failed        string
		statusPresent bool
	)
	switch x := o.Obj.(type) {
	case *appsv1.Deployment:
		want = int32Or(x.Spec.Replicas, 1)
		mine = podsByOwner["ReplicaSet/"+o.Namespace+"/"+x.Name+"-"+r.TemplateHash]
		if st, ok := o.Status.(*appsv1.DeploymentStatus); ok && st != nil {
			statusPresent = true
			healthy = deploymentComplete(want, generationOf(&x.ObjectMeta), st)
			if c := deploymentCondition(st, appsv1.DeploymentProgressing); c != nil && c.Reason == "ProgressDeadlineExceeded" {
				failed = c.Message
			}
		}
	case *appsv1.DaemonSet:
		for _, p := range podsByOwner[o.Key] {
			if podUpdated(p, r.TemplateHash) {
				mine = append(mine, p)
			}
		}
		if st, ok := o.Status.(*appsv1.DaemonSetStatus); ok && st != nil {
			statusPresent = true
			want = st.DesiredNumberScheduled
			healthy = st.UpdatedNumberScheduled == want && st.NumberAvailable == want
		}
	case *appsv1.StatefulSet:
		want = int32Or(x.Spec.Replicas, 1)
		for _, p := range podsByOwner[o.Key] {
			if podUpdated(p, r.TemplateHash) {
				mine = append(mine, p)
			}
		}
		if st, ok := o.Status.(*appsv1.StatefulSetStatus); ok && st != nil {
			statusPresent = true
			healthy = st.UpdatedReplicas == want && st.ReadyReplicas == want
		}
	}
	var bound, running int32
	for _, p := range mine {
		if p.NodeName != "" {
			bound++
		}
		if p.Phase == string(corev1.PodRunning) {
			running++
		}
	}
	if r.Scheduled.IsZero() && bound >= want {
		r.Scheduled = now
	}
	if r.Started.IsZero() && running >= want {
		r.Started = now
	}
	switch {
	case failed != "":
		return finish(store.RolloutDegraded, failed)
	case statusPresent && healthy:
		if r.Scheduled.IsZero() {
			r.Scheduled = now
		}
		if r.Started.IsZero() {
			r.Started = now
		}
		r.Ready = now
		return finish(store.RolloutHealthy, "")
	}
	return r
}

// sumHealth is a revision's health from its rollouts.
func sumHealth(rs []store.Rollout) store.RolloutOutcome {
	if len(rs) == 0 {
		return ""
	}
	counts := map[store.RolloutOutcome]int{}
	for _, r := range rs {
		counts[r.Outcome]++
	}
	switch {
	case counts[store.RolloutDegraded] > 0:
		return store.RolloutDegraded
	case counts[store.RolloutProgressing] > 0:
		return store.RolloutProgressing
	case counts[store.RolloutHealthy] > 0:
		return store.RolloutHealthy
	case counts[store.RolloutRolledBack] > 0:
		return store.RolloutRolledBack
	}
	return store.RolloutSuperseded
}
