package reconciler

import (
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/store"
)

// endpointsPlan is what the endpoints controller changes in one pass.
type endpointsPlan struct {
	upserts []*store.Endpoints
	deletes []string
	events  []*store.Event
}

// computeEndpoints is the endpoints controller: for every Service with a
// selector, the pods it selects that have an address, grouped into
// EndpointSlices by their resolved ports. A pod is ready when its Ready
// condition is true. Terminating pods (and those this pass makes
// terminating, in terminating) stay as terminating endpoints, serving but
// not ready: nodes send them no new connection while established ones
// finish. Pods in gone are left out: those this pass deletes, and parked
// ones (park.go), which keep running but take no connection.
// Services without a selector keep no managed endpoints. Only what changed
// is returned; events say when a service loses its last backend or a named
// targetPort matches no container port.
func computeEndpoints(objs []*store.Object, pods []*store.Pod, gone, terminating map[string]bool, cur []*store.Endpoints) endpointsPlan {
	var plan endpointsPlan
	// Only the namespaces with a Service that selects pods need theirs.
	selecting := map[string]bool{}
	for _, o := range objs {
		if svc, ok := o.Obj.(*corev1.Service); ok && svc.Spec.Selector != nil && svc.Spec.Type != corev1.ServiceTypeExternalName {
			selecting[o.Namespace] = true
		}
	}
	byNS := map[string][]*store.Pod{}
	isTerminating := func(p *store.Pod) bool { return p.Terminating() || terminating[p.Key] }
	for _, p := range pods {
		if !selecting[p.Namespace] || gone[p.Key] || p.PodIP == "" {
			continue
		}
		if p.Phase == string(corev1.PodFailed) || p.Phase == string(corev1.PodSucceeded) {
			continue
		}
		byNS[p.Namespace] = append(byNS[p.Namespace], p)
	}
	have := make(map[string]*store.Endpoints, len(cur))
	for _, e := range cur {
		have[e.Key] = e
	}
	for _, o := range objs {
		svc, ok := o.Obj.(*corev1.Service)
		if !ok || svc.Spec.Selector == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
			continue
		}
		key := o.Namespace + "/" + o.Name
		old := have[key]
		delete(have, key)
		slices, missing := endpointSlices(svc, byNS[o.Namespace], isTerminating)
		if old != nil && equality.Semantic.DeepEqual(old.Slices, slices) {
			continue
		}
		plan.upserts = append(plan.upserts, &store.Endpoints{Key: key, Namespace: o.Namespace, Name: o.Name, Slices: slices})
		if readyCount(slices) == 0 && (old == nil || readyCount(old.Slices) > 0) {
			msg := "no pod matches the selector " + labels.Set(svc.Spec.Selector).String() + ": connections are refused"
			if n := endpointCount(slices); n > 0 {
				msg = fmt.Sprintf("none of the %d pod(s) selected is ready: connections are refused", n)
			}
			plan.events = append(plan.events, &store.Event{ObjectKey: o.Key, Type: corev1.EventTypeWarning, Reason: "NoReadyEndpoints", Message: msg})
		}
		for _, m := range missing {
			if old == nil || !hasEndpointFor(old.Slices, m.pod) {
				plan.events = append(plan.events, &store.Event{ObjectKey: o.Key, Type: corev1.EventTypeWarning, Reason: "PortNotFound",
					Message: fmt.Sprintf("spec.ports[%d].targetPort %q: no container of pod %s has a port with that name", m.index, m.name, m.pod)})
			}
		}
	}
	for k := range have {
		plan.deletes = append(plan.deletes, k)
	}
	sort.Strings(plan.deletes)
	return plan
}

type missingPort struct {
	index int
	name  string
	pod   string
}

// endpointSlices groups the selected pods by their resolved ports.
func endpointSlices(svc *corev1.Service, pods []*store.Pod, terminating func(*store.Pod) bool) ([]*discoveryv1.EndpointSlice, []missingPort) {
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	type group struct {
		ports []discoveryv1.EndpointPort
		eps   []discoveryv1.Endpoint
	}
	groups := map[string]*group{}
	var missing []missingPort
	for _, p := range pods {
		if !sel.Matches(labels.Set(p.Labels())) {
			continue
		}
		var ports []discoveryv1.EndpointPort
		for i, sp := range svc.Spec.Ports {
			num, ok := resolveTargetPort(sp, &p.Base.Spec)
			if !ok {
				missing = append(missing, missingPort{index: i, name: sp.TargetPort.StrVal, pod: p.Name})
				continue
			}
			proto := sp.Protocol
			if proto == "" {
				proto = corev1.ProtocolTCP
			}
			ports = append(ports, discoveryv1.EndpointPort{Name: ptrTo(sp.Name), Protocol: ptrTo(proto), Port: ptrTo(num), AppProtocol: sp.AppProtocol})
		}
		if len(ports) == 0 && len(svc.Spec.Ports) > 0 {
			continue
		}
		sig := portsSignature(ports)
		g := groups[sig]
		if g == nil {
			g = &group{ports: ports}
			groups[sig] = g
		}
		serving := p.Ready
		term := terminating(p)
		ep := discoveryv1.Endpoint{
			Addresses:  []string{p.PodIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptrTo(serving && !term), Serving: ptrTo(serving), Terminating: ptrTo(term)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: p.Namespace, Name: p.Name, UID: p.UID},
		}
		if p.NodeName != "" {
			ep.NodeName = ptrTo(p.NodeName)
		}
		if spec := &p.Base.Spec; spec.Hostname != "" && spec.Subdomain == svc.Name {
			ep.Hostname = ptrTo(spec.Hostname)
		}
		g.eps = append(g.eps, ep)
	}
	sigs := make([]string, 0, len(groups))
	for s := range groups {
		sigs = append(sigs, s)
	}
	sort.Strings(sigs)
	out := make([]*discoveryv1.EndpointSlice, 0, len(sigs))
	for _, s := range sigs {
		g := groups[s]
		sort.Slice(g.eps, func(i, j int) bool { return g.eps[i].TargetRef.Name < g.eps[j].TargetRef.Name })
		h := fnv.New32a()
		h.Write([]byte(s))
		out = append(out, &discoveryv1.EndpointSlice{
			TypeMeta: metav1.TypeMeta{APIVersion: "discovery.k8s.io/v1", Kind: "EndpointSlice"},
			ObjectMeta: metav1.ObjectMeta{
				Name: svc.Name + "-" + strconv.FormatUint(uint64(h.Sum32()), 36), Namespace: svc.Namespace,
				Labels: map[string]string{discoveryv1.LabelServiceName: svc.Name, discoveryv1.LabelManagedBy: "keelson"},
			},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   g.eps,
			Ports:       g.ports,
		})
	}
	return out, missing
}

// resolveTargetPort is the container port a service port sends to on a
// pod (its spec): a number as it is, a name looked up among the pod's
// container ports with the same protocol.
func resolveTargetPort(sp corev1.ServicePort, spec *corev1.PodSpec) (int32, bool) {
	tp := sp.TargetPort
	if tp.Type == intstr.Int {
		if tp.IntVal == 0 {
			return sp.Port, true
		}
		return tp.IntVal, true
	}
	if tp.StrVal == "" {
		return sp.Port, true
	}
	if n, err := strconv.Atoi(tp.StrVal); err == nil {
		return int32(n), true
	}
	proto := sp.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	for _, cs := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for _, c := range cs {
			for _, cp := range c.Ports {
				cpProto := cp.Protocol
				if cpProto == "" {
					cpProto = corev1.ProtocolTCP
				}
				if cp.Name == tp.StrVal && cpProto == proto {
					return cp.ContainerPort, true
				}
			}
		}
	}
	return 0, false
}

func portsSignature(ports []discoveryv1.EndpointPort) string {
	var b strings.Builder
	for _, p := range ports {
		fmt.Fprintf(&b, "%s/%s/%d,", *p.Name, *p.Protocol, *p.Port)
	}
	return b.String()
}

func readyCount(slices []*discoveryv1.EndpointSlice) int {
	n := 0
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.Conditions.Ready != nil && *e.Conditions.Ready {
				n++
			}
		}
	}
	return n
}

func endpointCount(slices []*discoveryv1.EndpointSlice) int {
	n := 0
	for _, s := range slices {
		n += len(s.Endpoints)
	}
	return n
}

func hasEndpointFor(slices []*discoveryv1.EndpointSlice, pod string) bool {
	for _, s := range slices {
		for _, e := range s.Endpoints {
			if e.TargetRef != nil && e.TargetRef.Name == pod {
				return true
			}
		}
	}
	return false
}
