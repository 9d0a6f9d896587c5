package reconciler

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"reflect"
	"sort"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/uuid"
	v1helper "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"

	"github.com/keelson/keelson/store"
)

// podBase is what the pods a controller (ReplicaSet, DaemonSet,
// StatefulSet, Job) makes from its template share: their metadata and spec
// (a store.Pod's Base). The template is immutable in the store: the base
// shares its containers, volumes and maps instead of a copy each.
func podBase(owner *store.Object, tmpl *corev1.PodTemplateSpec) *corev1.Pod {
	return &corev1.Pod{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{
			Namespace: owner.Namespace, Labels: tmpl.Labels, Annotations: tmpl.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: owner.APIVersion, Kind: owner.Kind, Name: owner.Name, Controller: ptrTrue()}},
		},
		Spec: tmpl.Spec,
	}
}

// podOf makes a pod of a controller from base (see podBase), which the
// pods one pass makes from one template share.
func podOf(owner *store.Object, base *corev1.Pod, nodeName string, now time.Time) *store.Pod {
	// Key, name and UID are one string: 64 bytes for the three instead of
	// 32 and 48 (allocations round up).
	uid := string(uuid.NewUUID())
	kn := owner.Namespace + "/" + owner.Name + "-" + rand.String(5) + uid
	key, uid := kn[:len(kn)-len(uid)], kn[len(kn)-len(uid):]
	return &store.Pod{Key: key, Namespace: owner.Namespace, Name: key[len(owner.Namespace)+1:], OwnerKey: owner.Key,
		NodeName: nodeName, Phase: string(corev1.PodPending), Base: base, UID: types.UID(uid), Created: store.StampOf(now)}
}

// setStatus records an object's observed status when it changed.
func (p *clusterPlan) setStatus(o *store.Object, status any) {
	if o.Status != nil && reflect.TypeOf(o.Status) == reflect.TypeOf(status) && equality.Semantic.DeepEqual(o.Status, status) {
		return
	}
	c := *o
	c.Status = status
	p.upsertObjects = append(p.upsertObjects, &c)
}

// controllerRevisionHashLabel marks the pods of a DaemonSet or StatefulSet
// with the revision of the template they were made from, as Kubernetes
// does; a pod whose label differs from the current template's is old.
const controllerRevisionHashLabel = "controller-revision-hash"

// revisionHash names a pod template's revision.
func revisionHash(t *corev1.PodTemplateSpec) string {
	b, _ := json.Marshal(t)
	h := fnv.New32a()
	h.Write(b)
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// podUpdated reports whether p was made from revision rev. A pod without
// the label was made by a Keelson that did not label revisions: it counts
// as current, so that upgrading the controller restarts no pod.
func podUpdated(p *store.Pod, rev string) bool {
	v, ok := p.Labels()[controllerRevisionHashLabel]
	return !ok || v == rev
}

// withRevision is tmpl whose pods carry the revision label rev (a shallow
// copy: the template stays shared).
func withRevision(tmpl *corev1.PodTemplateSpec, rev string) *corev1.PodTemplateSpec {
	t := *tmpl
	t.Labels = withLabel(tmpl.Labels, controllerRevisionHashLabel, rev)
	return &t
}

// daemonSetFenceposts are a DaemonSet's maxSurge and maxUnavailable over
// its desired nodes, both rounded up (defaults 0 and 1); none for OnDelete.
func daemonSetFenceposts(ds *appsv1.DaemonSet, desired int32) (surge, unavailable int32) {
	if ds.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType {
		return 0, 0
	}
	var ms, mu *intstr.IntOrString
	if ru := ds.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		ms, mu = ru.MaxSurge, ru.MaxUnavailable
	}
	surge = scaledValue(ms, intstr.FromInt32(0), desired, true)
	unavailable = scaledValue(mu, intstr.FromInt32(1), desired, true)
	if desired > 0 && surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}

// noEligibleNodes is the condition (and the event's reason) of a DaemonSet
// that matches none of the cluster's nodes.
const noEligibleNodes appsv1.DaemonSetConditionType = "NoEligibleNodes"

// daemonSets runs one pod of each DaemonSet on every node it fits
// (node selector, required affinity, taints), following nodes that join,
// leave or change labels. A new template rolls out as Kubernetes does it:
// RollingUpdate replaces the old pod of up to maxUnavailable nodes at a
// time (delete, then make the new one), or with maxSurge starts the new pod
// beside the old one and deletes the old once the new is available
// (minReadySeconds); OnDelete makes new pods only where old ones are gone.
// A DaemonSet that matches none of the nodes has the condition
// noEligibleNodes, with a Warning event when it begins to (once the
// controller is warm).
func daemonSets(plan *clusterPlan, objs []*store.Object, podsByOwner map[string][]*store.Pod, nodes []*store.Node, deleted map[string]bool, deletePod func(*store.Pod, string), now time.Time, warm bool) {
	for _, o := range objs {
		ds, ok := o.Obj.(*appsv1.DaemonSet)
		if !ok {
			continue
		}
		probe := &corev1.Pod{Spec: ds.Spec.Template.Spec}
		aff := nodeaffinity.GetRequiredNodeAffinity(probe)
		eligible := map[string]bool{}
		var names []string
		for _, n := range nodes {
			if ok, _ := aff.Match(n.Node); !ok {
				continue
			}
			if _, bad := v1helper.FindMatchingUntoleratedTaint(klog.Background(), n.Node.Spec.Taints, ds.Spec.Template.Spec.Tolerations, func(t *corev1.Taint) bool {
				return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
			}, false); bad {
				continue
			}
			eligible[n.Name] = true
			names = append(names, n.Name)
		}
		sort.Strings(names)
		rev := revisionHash(&ds.Spec.Template)
		var base *corev1.Pod
		create := func(node string) *store.Pod {
			if base == nil {
				base = podBase(o, withRevision(&ds.Spec.Template, rev))
			}
			p := podOf(o, base, node, now)
			plan.upsertPods = append(plan.upsertPods, p)
			return p
		}
		surge, maxUnavailable := daemonSetFenceposts(ds, int32(len(names)))
		rolling := ds.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType
		available := func(p *store.Pod) bool { return podAvailable(p, ds.Spec.MinReadySeconds, now) }

		byNode := map[string][]*store.Pod{}
		for _, p := range podsByOwner[o.Key] {
			switch {
			case deleted[p.Key]:
			case !eligible[p.NodeName]:
				deletePod(p, fmt.Sprintf("node %s no longer runs DaemonSet %s", p.NodeName, o.Name))
			case podEnded(p):
				deletePod(p, "pod of DaemonSet "+o.Name+" ended; it is replaced")
			default:
				byNode[p.NodeName] = append(byNode[p.NodeName], p)
			}
		}
		// Each node keeps one pod (with surge: the oldest new one and the
		// oldest old one, until the new one is available).
		type onNode struct{ newPod, oldPod *store.Pod }
		state := make(map[string]*onNode, len(names))
		for _, n := range names {
			ps := byNode[n]
			sort.SliceStable(ps, func(i, j int) bool { return ps[i].Created.Before(ps[j].Created) })
			st := &onNode{}
			state[n] = st
			switch {
			case len(ps) == 0:
				st.newPod = create(n)
			case surge == 0:
				for _, p := range ps[1:] {
					deletePod(p, "a second pod of DaemonSet "+o.Name+" on node "+n)
				}
				if podUpdated(ps[0], rev) {
					st.newPod = ps[0]
				} else {
					st.oldPod = ps[0]
				}
			default:
				for _, p := range ps {
					switch up := podUpdated(p, rev); {
					case up && st.newPod == nil:
						st.newPod = p
					case !up && st.oldPod == nil:
						st.oldPod = p
					default:
						deletePod(p, "a second pod of DaemonSet "+o.Name+" on node "+n)
					}
				}
				if st.newPod != nil && st.oldPod != nil && (!st.oldPod.Ready || available(st.newPod)) {
					deletePod(st.oldPod, fmt.Sprintf("its node %s runs the new pod %s of DaemonSet %s", n, st.newPod.Name, o.Name))
					st.oldPod = nil
				}
			}
		}
		if rolling {
			replaced := func(p *store.Pod) {
				deletePod(p, fmt.Sprintf("DaemonSet %s rolls node %s to revision %s", o.Name, p.NodeName, rev))
			}
			if surge == 0 {
				// Delete old pods, unavailable ones first, while at most
				// maxUnavailable nodes lack an available pod; the next pass
				// makes their new pods.
				unavailable := int32(0)
				var first, then []*store.Pod
				for _, n := range names {
					st := state[n]
					switch {
					case st.newPod != nil:
						if !available(st.newPod) {
							unavailable++
						}
					case !available(st.oldPod):
						first = append(first, st.oldPod)
					default:
						then = append(then, st.oldPod)
					}
				}
				room := min(max(maxUnavailable-unavailable, 0), int32(len(then)))
				for _, p := range append(first, then[:room]...) {
					replaced(p)
					state[p.NodeName].oldPod = nil
				}
			} else {
				// Start new pods beside old ones: at once where the old one
				// is unavailable, else on at most maxSurge nodes at a time.
				surging := int32(0)
				var first, then []string
				for _, n := range names {
					st := state[n]
					switch {
					case st.oldPod == nil:
					case st.newPod == nil && !available(st.oldPod):
						first = append(first, n)
					case st.newPod == nil:
						then = append(then, n)
					case !available(st.newPod):
						surging++
					}
				}
				room := min(max(surge-surging, 0), int32(len(then)))
				for _, n := range append(first, then[:room]...) {
					state[n].newPod = create(n)
				}
			}
		}
		st := &appsv1.DaemonSetStatus{DesiredNumberScheduled: int32(len(names)), ObservedGeneration: generationOf(&ds.ObjectMeta)}
		for _, n := range names {
			// As Kubernetes, a node counts by its oldest pod.
			p := state[n].oldPod
			if p == nil {
				p = state[n].newPod
			}
			if p == nil {
				continue
			}
			st.CurrentNumberScheduled++
			if p.Ready {
				st.NumberReady++
			}
			if available(p) {
				st.NumberAvailable++
			}
			if podUpdated(p, rev) {
				st.UpdatedNumberScheduled++
			}
		}
		st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
		// No eligible node among those that joined is said once, when it
		// starts: the condition records that it was said. Until the
		// controller is warm its nodes may not all have come back, so the
		// condition stays as it was.
		var said *appsv1.DaemonSetCondition
		if prev, ok := o.Status.(*appsv1.DaemonSetStatus); ok {
			for i := range prev.Conditions {
				if prev.Conditions[i].Type == noEligibleNodes {
					said = &prev.Conditions[i]
				}
			}
		}
		switch none := len(eligible) == 0 && len(nodes) > 0; {
		case said != nil && (none || !warm):
			st.Conditions = []appsv1.DaemonSetCondition{*said}
		case none && warm:
			msg := fmt.Sprintf("DaemonSet %s matches none of the %d node(s): check its node selector, affinity and tolerations", o.Name, len(nodes))
			st.Conditions = []appsv1.DaemonSetCondition{{Type: noEligibleNodes, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now), Reason: string(noEligibleNodes), Message: msg}}
			plan.events = append(plan.events, &store.Event{ObjectKey: o.Key, Type: corev1.EventTypeWarning, Reason: string(noEligibleNodes), Message: msg})
		}
		plan.setStatus(o, st)
	}
}

// jobs runs each Job's pods to completion: up to parallelism at once until
// completions succeeded, counting failures against backoffLimit and
// stopping at activeDeadlineSeconds; finished pods are removed
// ttlSecondsAfterFinished after the Job finished.
func jobs(plan *clusterPlan, objs []*store.Object, podsByOwner map[string][]*store.Pod, deleted map[string]bool, deletePod func(*store.Pod, string), now time.Time) {
	for _, o := range objs {
		job, ok := o.Obj.(*batchv1.Job)
		if !ok {
			continue
		}
		var prev batchv1.JobStatus
		if s, ok := o.Status.(*batchv1.JobStatus); ok {
			prev = *s
		}
		st := prev.DeepCopy()
		completions, parallelism, backoffLimit := int32(1), int32(1), int32(6)
		if job.Spec.Completions != nil {
			completions = *job.Spec.Completions
		}
		if job.Spec.Parallelism != nil {
			parallelism = *job.Spec.Parallelism
		}
		if job.Spec.BackoffLimit != nil {
			backoffLimit = *job.Spec.BackoffLimit
		}
		if st.StartTime == nil {
			t := metav1.NewTime(now)
			st.StartTime = &t
		}
		var active []*store.Pod
		for _, p := range podsByOwner[o.Key] {
			if deleted[p.Key] {
				continue
			}
			switch p.Phase {
			case string(corev1.PodSucceeded):
				if !counted(prev, p) {
					st.Succeeded++
					st.UncountedTerminatedPods = addUID(st.UncountedTerminatedPods, p, true)
				}
			case string(corev1.PodFailed):
				if !counted(prev, p) {
					st.Failed++
					st.UncountedTerminatedPods = addUID(st.UncountedTerminatedPods, p, false)
				}
			default:
				active = append(active, p)
			}
		}
		finished := st.CompletionTime != nil || jobFailed(st)
		switch {
		case finished:
		case st.Succeeded >= completions:
			t := metav1.NewTime(now)
			st.CompletionTime = &t
			st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, LastTransitionTime: t})
			plan.events = append(plan.events, &store.Event{ObjectKey: o.Key, Type: corev1.EventTypeNormal, Reason: "Completed", Message: fmt.Sprintf("Job %s completed (%d succeeded)", o.Name, st.Succeeded)})
			finished = true
		case st.Failed > backoffLimit:
			finish(plan, o, st, "BackoffLimitExceeded", fmt.Sprintf("Job %s has reached the specified backoff limit (%d failed pods)", o.Name, st.Failed), now)
			finished = true
		case job.Spec.ActiveDeadlineSeconds != nil && now.Sub(st.StartTime.Time) > time.Duration(*job.Spec.ActiveDeadlineSeconds)*time.Second:
			finish(plan, o, st, "DeadlineExceeded", fmt.Sprintf("Job %s was active longer than its deadline (%ds)", o.Name, *job.Spec.ActiveDeadlineSeconds), now)
			finished = true
		}
		if finished {
			for _, p := range active {
				deletePod(p, "Job "+o.Name+" finished")
			}
			active = nil
			if ttl := job.Spec.TTLSecondsAfterFinished; ttl != nil {
				end := st.CompletionTime
				for _, c := range st.Conditions {
					if c.Type == batchv1.JobFailed {
						end = &c.LastTransitionTime
					}
				}
				if end != nil && now.Sub(end.Time) >= time.Duration(*ttl)*time.Second {
					for _, p := range podsByOwner[o.Key] {
						if !deleted[p.Key] {
							deletePod(p, "Job "+o.Name+" finished more than ttlSecondsAfterFinished ago")
						}
					}
					// A Job its CronJob made goes too; one from Git stays,
					// as Git has it (its pods are gone).
					if strings.HasPrefix(o.OwnerKey, "CronJob/") {
						plan.deleteObjects = append(plan.deleteObjects, o.Key)
						plan.events = append(plan.events, &store.Event{ObjectKey: o.OwnerKey, Type: corev1.EventTypeNormal, Reason: "SuccessfulDelete",
							Message: fmt.Sprintf("deleted Job %s: finished more than ttlSecondsAfterFinished (%ds) ago", o.Name, *ttl)})
						continue
					}
				}
			}
		} else {
			want := min(parallelism, completions-st.Succeeded) - int32(len(active))
			if want > 0 {
				base := podBase(o, &job.Spec.Template)
				for range want {
					plan.upsertPods = append(plan.upsertPods, podOf(o, base, "", now))
				}
			}
			active = append(active, make([]*store.Pod, max(want, 0))...)
		}
		st.Active = int32(len(active))
		plan.setStatus(o, st)
	}
}

// counted reports whether a finished pod was already counted in prev.
func counted(prev batchv1.JobStatus, p *store.Pod) bool {
	if prev.UncountedTerminatedPods == nil {
		return false
	}
	for _, u := range append(prev.UncountedTerminatedPods.Succeeded, prev.UncountedTerminatedPods.Failed...) {
		if u == p.UID {
			return true
		}
	}
	return false
}

// addUID remembers a counted pod (the field's name is Kubernetes'; here it
// holds the pods already counted, so that a pass never counts one twice).
func addUID(u *batchv1.UncountedTerminatedPods, p *store.Pod, ok bool) *batchv1.UncountedTerminatedPods {
	if u == nil {
		u = &batchv1.UncountedTerminatedPods{}
	}
	if ok {
		u.Succeeded = append(u.Succeeded, p.UID)
	} else {
		u.Failed = append(u.Failed, p.UID)
	}
	return u
}

func jobFailed(st *batchv1.JobStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == batchv1.JobFailed && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

func finish(plan *clusterPlan, o *store.Object, st *batchv1.JobStatus, reason, msg string, now time.Time) {
	st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: batchv1.JobFailed, Status: corev1.ConditionTrue, Reason: reason, Message: msg, LastTransitionTime: metav1.NewTime(now)})
	plan.events = append(plan.events, &store.Event{ObjectKey: o.Key, Type: corev1.EventTypeWarning, Reason: reason, Message: msg})
}

// statefulSets gives each StatefulSet pods with stable names
// (<name>-<ordinal>), created in order, each once the one before is Ready
// (OrderedReady, the default) or all at once (Parallel), and removed from
// the highest ordinal down. A new template rolls out as Kubernetes does it:
// RollingUpdate deletes the pod of the highest ordinal not yet updated, one
// at a time, each after the pods above it are updated and Ready, down to
// the partition; the deleted pod comes back with the same name from the new
// template. OnDelete makes new pods only where old ones are gone.
func statefulSets(plan *clusterPlan, objs []*store.Object, podsByOwner map[string][]*store.Pod, deleted map[string]bool, deletePod func(*store.Pod, string), now time.Time) {
	for _, o := range objs {
		ss, ok := o.Obj.(*appsv1.StatefulSet)
		if !ok {
			continue
		}
		want := 1
		if ss.Spec.Replicas != nil {
			want = int(*ss.Spec.Replicas)
		}
		ordered := ss.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
		rev := o.Name + "-" + revisionHash(&ss.Spec.Template)
		byOrdinal := map[int]*store.Pod{}
		for _, p := range podsByOwner[o.Key] {
			if deleted[p.Key] {
				continue
			}
			var ord int
			if _, err := fmt.Sscanf(p.Name[len(o.Name):], "-%d", &ord); err != nil || p.Name != fmt.Sprintf("%s-%d", o.Name, ord) {
				deletePod(p, "not a pod of StatefulSet "+o.Name)
				continue
			}
			if podEnded(p) {
				deletePod(p, "pod of StatefulSet "+o.Name+" ended; it is recreated with the same name")
				continue
			}
			byOrdinal[ord] = p
		}
		// Scale down from the top.
		top := -1
		for ord := range byOrdinal {
			top = max(top, ord)
		}
		scaledDown := false
		for ord := top; ord >= want; ord-- {
			if p := byOrdinal[ord]; p != nil {
				deletePod(p, fmt.Sprintf("StatefulSet %s scaled down to %d", o.Name, want))
				delete(byOrdinal, ord)
				scaledDown = true
				if ordered {
					break
				}
			}
		}
		// Make the missing pods, from the current template.
		progress, missing := true, false
		var tmpl *corev1.PodTemplateSpec
		for ord := 0; ord < want; ord++ {
			if p := byOrdinal[ord]; p != nil {
				if ordered && !p.Ready {
					progress = false // the next waits for this one
				}
				continue
			}
			missing = true
			if ordered && !progress {
				continue
			}
			if tmpl == nil {
				tmpl = withRevision(&ss.Spec.Template, rev)
			}
			// Each pod has its own labels and host name: its own base.
			base := podBase(o, tmpl)
			np := podOf(o, base, "", now)
			name := fmt.Sprintf("%s-%d", o.Name, ord)
			np.Key, np.Name = o.Namespace+"/"+name, name
			base.Spec.Hostname, base.Spec.Subdomain = name, ss.Spec.ServiceName
			base.Labels = withLabel(base.Labels, "statefulset.kubernetes.io/pod-name", name)
			plan.upsertPods = append(plan.upsertPods, np)
			progress = false
		}
		// Roll: one pod at a time, from the top, once every pod is there
		// (and, OrderedReady, Ready).
		if ss.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType && !missing && !scaledDown && (!ordered || progress) {
			partition := 0
			if ru := ss.Spec.UpdateStrategy.RollingUpdate; ru != nil && ru.Partition != nil {
				partition = int(*ru.Partition)
			}
			for ord := want - 1; ord >= partition; ord-- {
				p := byOrdinal[ord]
				if !podUpdated(p, rev) {
					deletePod(p, fmt.Sprintf("StatefulSet %s updates pod %s to revision %s", o.Name, p.Name, rev))
					delete(byOrdinal, ord)
					break
				}
				if !p.Ready {
					break // wait for the updated pod above
				}
			}
		}
		plan.setStatus(o, statefulSetStatus(o, ss, byOrdinal, want, rev, now))
	}
}

// statefulSetStatus counts a StatefulSet's pods. Keelson keeps no history
// of templates (ControllerRevisions): the current revision is that of the
// pods not yet updated (the lowest ordinal's), and becomes the update
// revision once every pod is updated and Ready.
func statefulSetStatus(o *store.Object, ss *appsv1.StatefulSet, byOrdinal map[int]*store.Pod, want int, rev string, now time.Time) *appsv1.StatefulSetStatus {
	st := &appsv1.StatefulSetStatus{ObservedGeneration: generationOf(&ss.ObjectMeta), Replicas: int32(len(byOrdinal)), UpdateRevision: rev}
	ords := make([]int, 0, len(byOrdinal))
	for ord := range byOrdinal {
		ords = append(ords, ord)
	}
	sort.Ints(ords)
	for _, ord := range ords {
		p := byOrdinal[ord]
		if p.Ready {
			st.ReadyReplicas++
		}
		if podAvailable(p, ss.Spec.MinReadySeconds, now) {
			st.AvailableReplicas++
		}
		if podUpdated(p, rev) {
			st.UpdatedReplicas++
		} else if st.CurrentRevision == "" {
			st.CurrentRevision = p.Labels()[controllerRevisionHashLabel]
		}
	}
	switch prev, _ := o.Status.(*appsv1.StatefulSetStatus); {
	case st.CurrentRevision != "":
		for _, p := range byOrdinal {
			if p.Labels()[controllerRevisionHashLabel] == st.CurrentRevision {
				st.CurrentReplicas++
			}
		}
	case prev != nil && prev.CurrentRevision != "" && prev.CurrentRevision != rev && (int(st.ReadyReplicas) != want || len(byOrdinal) != want):
		st.CurrentRevision = prev.CurrentRevision // the last updated pod is not Ready yet
	default:
		st.CurrentRevision, st.CurrentReplicas = rev, st.UpdatedReplicas
	}
	return st
}

// cronJobs creates each CronJob's Jobs on its schedule, with its
// concurrency policy and history limits. The Jobs are objects owned by the
// CronJob, run by the Job controller. reported tells whether an object
// already has an event (nil: none has).
func cronJobs(plan *clusterPlan, objs []*store.Object, byKey map[string]*store.Object, now time.Time, reported eventLookup) {
	owned := map[string][]*store.Object{}
	for _, o := range objs {
		if _, ok := o.Obj.(*batchv1.Job); ok && o.OwnerKey != "" {
			owned[o.OwnerKey] = append(owned[o.OwnerKey], o)
		}
	}
	for _, o := range objs {
		cj, ok := o.Obj.(*batchv1.CronJob)
		if !ok {
			continue
		}
		var st batchv1.CronJobStatus
		if s, ok := o.Status.(*batchv1.CronJobStatus); ok {
			st = *s.DeepCopy()
		}
		jobsOf := owned[o.Key]
		sort.Slice(jobsOf, func(i, j int) bool { return jobsOf[i].Name < jobsOf[j].Name })
		var active []*store.Object
		var succeeded, failed []*store.Object
		for _, j := range jobsOf {
			js, _ := j.Status.(*batchv1.JobStatus)
			switch {
			case js != nil && js.CompletionTime != nil:
				succeeded = append(succeeded, j)
			case js != nil && jobFailed(js):
				failed = append(failed, j)
			default:
				active = append(active, j)
			}
		}
		sched, err := cronParser.Parse(withTZ(cj))
		if err != nil {
			continue // validated on load; an unparsable schedule never runs
		}
		last := now
		if st.LastScheduleTime != nil {
			last = st.LastScheduleTime.Time
		}
		next := sched.Next(last)
		suspended := cj.Spec.Suspend != nil && *cj.Spec.Suspend
		if st.LastScheduleTime == nil {
			t := metav1.NewTime(now)
			st.LastScheduleTime = &t // the schedule counts from when Keelson first saw it
		} else if !next.After(now) && !suspended {
			// Runs missed while no pass came (a controller that was down)
			// are not made up one by one: the most recent one runs, as in
			// Kubernetes, and only within startingDeadlineSeconds of its time.
			next = mostRecentRun(sched, next, now)
			due := true // lastScheduleTime moves on to next
			run := true
			if d := cj.Spec.StartingDeadlineSeconds; d != nil && now.Sub(next) > time.Duration(*d)*time.Second {
				run = false
				plan.events = append(plan.events, &store.Event{ObjectKey: o.Key, Type: corev1.EventTypeWarning, Reason: "MissSchedule",
					Message: fmt.Sprintf("missed the run of %s by %s, more than startingDeadlineSeconds (%ds)", next.UTC().Format(time.RFC3339), now.Sub(next).Round(time.Second), *d)})
			}
			switch cj.Spec.ConcurrencyPolicy {
			case batchv1.ForbidConcurrent:
				if run && len(active) > 0 {
					// As in Kubernetes, the run waits: lastScheduleTime stays,
					// so it starts when the running Job ends (if that is
					// within startingDeadlineSeconds of its time), and a
					// later scheduled time takes its place meanwhile. Said
					// once for each scheduled time, not at every pass.
					run, due = false, false
					msg := fmt.Sprintf("the run of %s waits: Job %s is still running (concurrencyPolicy Forbid)", next.UTC().Format(time.RFC3339), active[len(active)-1].Name)
					if reported == nil || !reported(o.Key, "JobAlreadyActive", msg) {
						plan.events = append(plan.events, &store.Event{ObjectKey: o.Key, Type: corev1.EventTypeNormal, Reason: "JobAlreadyActive", Message: msg})
					}
				}
			case batchv1.ReplaceConcurrent:
				if run {
					for _, j := range active {
						plan.deleteObjects = append(plan.deleteObjects, j.Key)
					}
					active = nil
				}
			}
			if due {
				t := metav1.NewTime(next)
				st.LastScheduleTime = &t
			}
			if run {
				j := jobFor(o, cj, next)
				if byKey[j.Key] == nil {
					plan.upsertObjects = append(plan.upsertObjects, j)
					active = append(active, j)
					plan.events = append(plan.events, &store.Event{ObjectKey: o.Key, Type: corev1.EventTypeNormal, Reason: "SuccessfulCreate", Message: "created Job " + j.Name})
				}
			}
		}
		keep := func(list []*store.Object, limit *int32, def int32) {
			n := def
			if limit != nil {
				n = *limit
			}
			for i := 0; i < len(list)-int(n); i++ {
				plan.deleteObjects = append(plan.deleteObjects, list[i].Key)
			}
		}
		keep(succeeded, cj.Spec.SuccessfulJobsHistoryLimit, 3)
		keep(failed, cj.Spec.FailedJobsHistoryLimit, 1)
		st.Active = nil
		for _, j := range active {
			st.Active = append(st.Active, corev1.ObjectReference{Kind: "Job", Namespace: j.Namespace, Name: j.Name})
		}
		plan.setStatus(o, &st)
	}
}

// eventLookup tells whether the object with key has an event with reason
// and message in the store.
type eventLookup func(key, reason, message string) bool

// mostRecentRun is the last run time of sched from first (a due one) up to
// now. A gap of more than a day is looked at from a day before now, so that
// a schedule of every minute after a long outage costs at most 1,440 steps.
func mostRecentRun(sched cron.Schedule, first, now time.Time) time.Time {
	last := first
	if now.Sub(first) > 24*time.Hour {
		if t := sched.Next(now.Add(-24 * time.Hour)); !t.After(now) {
			last = t
		}
	}
	for t := sched.Next(last); !t.After(now); t = sched.Next(t) {
		last = t
	}
	return last
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func withTZ(cj *batchv1.CronJob) string {
	if cj.Spec.TimeZone != nil && *cj.Spec.TimeZone != "" {
		return "CRON_TZ=" + *cj.Spec.TimeZone + " " + cj.Spec.Schedule
	}
	return cj.Spec.Schedule
}

// jobFor is the Job a CronJob runs for the time t, named as Kubernetes
// names them (the scheduled time in minutes).
func jobFor(o *store.Object, cj *batchv1.CronJob, t time.Time) *store.Object {
	name := fmt.Sprintf("%s-%d", cj.Name, t.Unix()/60)
	j := &batchv1.Job{
		TypeMeta: metav1.TypeMeta{APIVersion: "batch/v1", Kind: "Job"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: cj.Namespace, Labels: cj.Spec.JobTemplate.Labels, Annotations: cj.Spec.JobTemplate.Annotations,
			OwnerReferences: []metav1.OwnerReference{{APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, Controller: ptrTrue()}}},
		Spec: cj.Spec.JobTemplate.Spec,
	}
	return &store.Object{Key: "Job/" + cj.Namespace + "/" + name, APIVersion: "batch/v1", Kind: "Job", Namespace: cj.Namespace, Name: name,
		Labels: j.Labels, OwnerKey: o.Key, Obj: j, File: o.File, Line: o.Line, Hash: fmt.Sprintf("%s@%d", o.Hash, t.Unix()), Revision: o.Revision}
}
