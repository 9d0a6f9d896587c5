package store

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A pod row is compact because the pods table is the store's largest
// (100,000 rows at scale), and a corev1.Pod is 1.2 KB before any of its
// maps, slices or strings. The row keeps:
//
//   - what the pods of one template share (labels, annotations, owner
//     references, spec) behind one pointer, Base, so that a ReplicaSet's
//     100 pods hold one copy of its template between them;
//   - the pod's own fields (name, UID, creation time, node, deletion);
//   - its status encoded (podstatus.go): a header for what agents report
//     of nearly every pod, then Kubernetes' protobuf form (as etcd holds
//     it) of the rest; some 80 bytes instead of a few kilobytes of structs,
//     and nothing lost that the API serves (JSON, like protobuf, keeps
//     times to the second; as from Kubernetes' own storage, an empty list
//     comes back as none, which shows only in the few list fields JSON
//     writes even when empty);
//   - beside it, decoded, what the controllers read of every pod on every
//     pass: phase, pod IP, readiness (with its exact time) and restarts.
//
// Object builds the corev1.Pod the API serves; NewPod is the way back.

// NewPod is the row of a whole pod (one an agent runs, or one adopted from
// an agent's report): its own fields go to the row, and p itself, without
// its status, becomes the row's Base. p must not be changed afterwards.
// OwnerKey is left to the caller.
func NewPod(p *corev1.Pod) *Pod {
	base := *p
	base.Status = corev1.PodStatus{}
	r := &Pod{
		Key: p.Namespace + "/" + p.Name, Namespace: p.Namespace, Name: p.Name, NodeName: p.Spec.NodeName,
		Base: &base, UID: p.UID, Created: StampOf(p.CreationTimestamp.Time),
	}
	r.SetStatus(&p.Status)
	return r
}

// SetStatus replaces the row's status with s (which it does not keep or
// change). Call it on a row not yet inserted, after its Base is set.
func (p *Pod) SetStatus(s *corev1.PodStatus) {
	// The phase is one of a few constants: rows share them rather than each
	// keeping the string its report decoded (100,000 strings fewer at
	// 100,000 pods).
	p.Phase, p.PodIP = phaseString(s.Phase), s.PodIP
	p.Ready, p.ReadySince = false, 0
	for _, c := range s.Conditions {
		if c.Type == corev1.PodReady {
			p.Ready, p.ReadySince = c.Status == corev1.ConditionTrue, StampOf(c.LastTransitionTime.Time)
			break
		}
	}
	p.Restarts = 0
	for _, c := range s.ContainerStatuses {
		p.Restarts = max(p.Restarts, c.RestartCount)
	}
	p.status = encodeStatus(p.Base, *s)
}

// phaseString is phase as a string that is not phase's: the constant for a
// phase Kubernetes defines, a copy for any other.
func phaseString(phase corev1.PodPhase) string {
	switch phase {
	case corev1.PodPending:
		return string(corev1.PodPending)
	case corev1.PodRunning:
		return string(corev1.PodRunning)
	case corev1.PodSucceeded:
		return string(corev1.PodSucceeded)
	case corev1.PodFailed:
		return string(corev1.PodFailed)
	case corev1.PodUnknown:
		return string(corev1.PodUnknown)
	}
	return strings.Clone(string(phase))
}

// Status is the pod's status as SetStatus was given it, but for times,
// which it keeps to the second as the API does (the Ready condition's
// exactly).
func (p *Pod) Status() corev1.PodStatus {
	s := decodeStatus(p.Base, p.status, corev1.PodPhase(p.Phase), p.PodIP)
	for i := range s.Conditions {
		if s.Conditions[i].Type == corev1.PodReady {
			if p.ReadySince != StampBeyond {
				s.Conditions[i].LastTransitionTime = metav1.Time{Time: p.ReadySince.Time()}
			}
			break
		}
	}
	return s
}

// Object is the pod as the API serves it. It shares Base's maps and
// slices: it is for reading.
func (p *Pod) Object() *corev1.Pod {
	var o corev1.Pod
	if p.Base != nil {
		o = *p.Base
	}
	o.Name, o.Namespace, o.UID = p.Name, p.Namespace, p.UID
	if p.Created != StampBeyond { // else Base has it, as the agent reported it
		o.CreationTimestamp = metav1.Time{Time: p.Created.Time()}
	}
	if p.NodeName != "" {
		o.Spec.NodeName = p.NodeName
	}
	if p.Terminating() {
		ts := metav1.Time{Time: p.Termination.Since}
		grace := int64(corev1.DefaultTerminationGracePeriodSeconds)
		if g := o.Spec.TerminationGracePeriodSeconds; g != nil {
			grace = *g
		}
		o.DeletionTimestamp, o.DeletionGracePeriodSeconds = &ts, &grace
	}
	o.Status = p.Status()
	return &o
}

// Labels are the pod's labels (its Base's).
func (p *Pod) Labels() map[string]string {
	if p.Base == nil {
		return nil
	}
	return p.Base.Labels
}
