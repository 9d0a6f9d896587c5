package store

import (
	"encoding/binary"
	"reflect"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A pod's status is held encoded (see pod.go): what nearly every status
// has, in the few shapes agents report, goes in a short header, and the
// rest in Kubernetes' protobuf form, which loses nothing the API serves.
// The header takes:
//
//   - the conditions, when each has a type, status and reason of the
//     known ones, a lastTransitionTime and nothing else (else all stay in
//     the protobuf part): three bytes and a time each, where protobuf
//     spends some 33 bytes;
//   - startTime, and qosClass as a byte;
//   - podIPs and hostIPs when they are [podIP] and [hostIP] (a bit each);
//   - the name and image of a container status when they are those of the
//     spec's container at the same place (a bit each).
//
// Times are kept to the second, as JSON and protobuf keep them. The layout:
//
//	flags                 byte (statusStartTime, ...)
//	startTime             time, with statusStartTime
//	conditions            uvarint count, then type, status, reason (a byte each) and time, with statusConditions
//	qosClass              byte
//	containers            uvarint count, then a byte each (bit 0: the spec's name, bit 1: its image)
//	init containers       the same
//	the rest              protobuf of corev1.PodStatus, if there is any
//
// A time is a uvarint: 0 for none, else the zigzag of its Unix second, plus
// one. An empty status is the empty string.

const (
	statusStartTime = 1 << iota
	statusConditions
	statusPodIPs  // podIPs is [podIP]
	statusHostIPs // hostIPs is [hostIP]
)

const (
	specName  = 1 << iota // a container status's name is its spec's
	specImage             // its image is
)

var (
	conditionTypes = []corev1.PodConditionType{"", corev1.PodScheduled, corev1.PodInitialized, corev1.ContainersReady, corev1.PodReady,
		corev1.PodReadyToStartContainers, corev1.DisruptionTarget, corev1.PodResizePending, corev1.PodResizeInProgress}
	conditionStatuses = []corev1.ConditionStatus{"", corev1.ConditionTrue, corev1.ConditionFalse, corev1.ConditionUnknown}
	conditionReasons  = []string{"", "ContainersNotReady", "ContainersNotInitialized", "SandboxNotReady", "PodCompleted",
		corev1.PodReasonUnschedulable, corev1.PodReasonSchedulingGated, corev1.PodReasonSchedulerError}
	qosClasses = []corev1.PodQOSClass{"", corev1.PodQOSGuaranteed, corev1.PodQOSBurstable, corev1.PodQOSBestEffort}
)

// code is v's place in list.
func code[T comparable](list []T, v T) (byte, bool) {
	for i, x := range list {
		if x == v {
			return byte(i), true
		}
	}
	return 0, false
}

// at is list[c], or the zero value for a code no encoding makes.
func at[T any](list []T, c byte) T {
	var zero T
	if int(c) < len(list) {
		return list[c]
	}
	return zero
}

func appendTime(b []byte, t metav1.Time) []byte {
	if t.IsZero() {
		return binary.AppendUvarint(b, 0)
	}
	s := t.Unix()
	return binary.AppendUvarint(b, uint64(s<<1^s>>63)+1)
}

// readTime reads a time as appendTime wrote it, as JSON and protobuf
// decode one: to the second, in local time.
func readTime(b []byte) (metav1.Time, []byte) {
	v, n := binary.Uvarint(b)
	if n <= 0 || v == 0 {
		return metav1.Time{}, b[max(n, 0):]
	}
	v--
	return metav1.Time{Time: time.Unix(int64(v>>1)^-int64(v&1), 0).Local()}, b[n:]
}

// compactCondition reports whether c fits in the header: known type,
// status and reason, and no message, probe time or generation.
func compactCondition(c *corev1.PodCondition) bool {
	_, t := code(conditionTypes, c.Type)
	_, s := code(conditionStatuses, c.Status)
	_, r := code(conditionReasons, c.Reason)
	return t && s && r && c.Message == "" && c.LastProbeTime.IsZero() && c.ObservedGeneration == 0
}

// encodeStatus is s (without phase and podIP, which rows keep apart) in
// the form above; base is the pod's Base (nil for none), whose containers
// name the statuses'.
func encodeStatus(base *corev1.Pod, s corev1.PodStatus) string {
	var spec corev1.PodSpec
	if base != nil {
		spec = base.Spec
	}
	podIP := s.PodIP
	s.Phase, s.PodIP = "", ""
	if reflect.ValueOf(s).IsZero() {
		return ""
	}
	b := []byte{0}
	if s.StartTime != nil && !s.StartTime.IsZero() {
		b[0] |= statusStartTime
		b = appendTime(b, *s.StartTime)
		s.StartTime = nil
	}
	compact := len(s.Conditions) > 0
	for i := range s.Conditions {
		compact = compact && compactCondition(&s.Conditions[i])
	}
	if compact {
		b[0] |= statusConditions
		b = binary.AppendUvarint(b, uint64(len(s.Conditions)))
		for _, c := range s.Conditions {
			t, _ := code(conditionTypes, c.Type)
			st, _ := code(conditionStatuses, c.Status)
			r, _ := code(conditionReasons, c.Reason)
			b = appendTime(append(b, t, st, r), c.LastTransitionTime)
		}
		s.Conditions = nil
	}
	if len(s.PodIPs) == 1 && podIP != "" && s.PodIPs[0] == (corev1.PodIP{IP: podIP}) {
		b[0] |= statusPodIPs
		s.PodIPs = nil
	}
	if len(s.HostIPs) == 1 && s.HostIP != "" && s.HostIPs[0] == (corev1.HostIP{IP: s.HostIP}) {
		b[0] |= statusHostIPs
		s.HostIPs = nil
	}
	qos, ok := code(qosClasses, s.QOSClass)
	if ok {
		s.QOSClass = ""
	}
	b = append(b, qos)
	b, s.ContainerStatuses = appendContainers(b, s.ContainerStatuses, spec.Containers)
	b, s.InitContainerStatuses = appendContainers(b, s.InitContainerStatuses, spec.InitContainers)
	if reflect.ValueOf(s).IsZero() {
		return string(b) // protobuf writes every string, empty or not
	}
	// Generated marshalling fails only when a nested field's encoder does,
	// and none of a PodStatus's can: every one returns a nil error.
	rest, _ := s.Marshal()
	return string(append(b, rest...))
}

// appendContainers writes which of cs take their name and image from the
// spec's containers, and returns cs without them (a copy when it changes).
func appendContainers(b []byte, cs []corev1.ContainerStatus, spec []corev1.Container) ([]byte, []corev1.ContainerStatus) {
	b = binary.AppendUvarint(b, uint64(len(cs)))
	copied := false
	for i := range cs {
		var f byte
		if i < len(spec) && cs[i].Name != "" && cs[i].Name == spec[i].Name {
			f |= specName
		}
		if i < len(spec) && cs[i].Image != "" && cs[i].Image == spec[i].Image {
			f |= specImage
		}
		if f != 0 && !copied {
			cs, copied = append([]corev1.ContainerStatus(nil), cs...), true
		}
		if f&specName != 0 {
			cs[i].Name = ""
		}
		if f&specImage != 0 {
			cs[i].Image = ""
		}
		b = append(b, f)
	}
	return b, cs
}

// decodeStatus is the status encodeStatus made of the pod's, with its
// phase and podIP.
func decodeStatus(base *corev1.Pod, enc string, phase corev1.PodPhase, podIP string) corev1.PodStatus {
	var s corev1.PodStatus
	if enc != "" {
		decodeInto(&s, base, []byte(enc), podIP)
	}
	s.Phase, s.PodIP = phase, podIP
	return s
}

// decodeInto fills s from b. The encoding is encodeStatus's own, so this
// does not fail; on bytes it did not make it stops where they end.
func decodeInto(s *corev1.PodStatus, base *corev1.Pod, b []byte, podIP string) {
	var spec corev1.PodSpec
	if base != nil {
		spec = base.Spec
	}
	flags := b[0]
	b = b[1:]
	var start metav1.Time
	if flags&statusStartTime != 0 {
		start, b = readTime(b)
	}
	var conds []corev1.PodCondition
	if flags&statusConditions != 0 {
		n, k := binary.Uvarint(b)
		b = b[max(k, 0):]
		conds = make([]corev1.PodCondition, 0, min(n, uint64(len(b)/4)))
		for range n {
			if len(b) < 4 {
				break
			}
			c := corev1.PodCondition{Type: at(conditionTypes, b[0]), Status: at(conditionStatuses, b[1]), Reason: at(conditionReasons, b[2])}
			c.LastTransitionTime, b = readTime(b[3:])
			conds = append(conds, c)
		}
	}
	if len(b) == 0 {
		return
	}
	qos := at(qosClasses, b[0])
	b = b[1:]
	cf, b := readFlags(b)
	icf, b := readFlags(b)
	_ = s.Unmarshal(b)
	if flags&statusStartTime != 0 {
		s.StartTime = &start
	}
	if flags&statusConditions != 0 {
		s.Conditions = conds
	}
	if flags&statusPodIPs != 0 {
		s.PodIPs = []corev1.PodIP{{IP: podIP}}
	}
	if flags&statusHostIPs != 0 {
		s.HostIPs = []corev1.HostIP{{IP: s.HostIP}}
	}
	if qos != "" {
		s.QOSClass = qos
	}
	fromSpec(s.ContainerStatuses, cf, spec.Containers)
	fromSpec(s.InitContainerStatuses, icf, spec.InitContainers)
}

func readFlags(b []byte) ([]byte, []byte) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)-k) {
		return nil, nil
	}
	return b[k : k+int(n)], b[k+int(n):]
}

// fromSpec gives container statuses back the names and images flags say
// are their spec's.
func fromSpec(cs []corev1.ContainerStatus, flags []byte, spec []corev1.Container) {
	for i, f := range flags {
		if i >= len(cs) || i >= len(spec) {
			return
		}
		if f&specName != 0 {
			cs[i].Name = spec[i].Name
		}
		if f&specImage != 0 {
			cs[i].Image = spec[i].Image
		}
	}
}
