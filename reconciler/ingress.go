package reconciler

import (
	"fmt"
	"sort"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/keelson/keelson/ingress"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

// ingressProblems checks the Ingresses of the state a revision makes
// against its IngressClasses, Services and TLS Secrets, as every node's
// proxy will read them (package ingress): two Ingresses claiming one host
// and path, a backend service or port that does not exist, a TLS Secret
// that is missing or whose key does not match its certificate. They are
// warnings, not errors: the other routes keep working, the older Ingress
// keeps a contested route. Each names the Ingress's file and line and the
// field. events gets one per problem of the Ingresses the revision adds or
// changes, for describe.
func ingressProblems(state []*store.Object, changed map[string]bool) (issues []manifest.Issue, events []*store.Event) {
	var in ingress.Input
	byRef := map[string]*store.Object{}
	for _, o := range state {
		switch x := o.Obj.(type) {
		case *networkingv1.Ingress:
			// Objects the revision adds have no CreateIndex yet: newest.
			age := o.CreateIndex
			if age == 0 {
				age = ^uint64(0)
			}
			in.Ingresses = append(in.Ingresses, ingress.Ingress{CreateIndex: age, Ingress: x})
			byRef[o.Namespace+"/"+o.Name] = o
		case *networkingv1.IngressClass:
			in.Classes = append(in.Classes, x)
		case *corev1.Service:
			in.Services = append(in.Services, x)
		case *corev1.Secret:
			if x.Type == corev1.SecretTypeTLS {
				in.Secrets = append(in.Secrets, x)
			}
		}
	}
	if len(in.Ingresses) == 0 {
		return nil, nil
	}
	_, problems := ingress.Build(in)
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].Ingress.String() < problems[j].Ingress.String() })
	for _, p := range problems {
		o := byRef[p.Ingress.String()]
		if o == nil {
			continue
		}
		issues = append(issues, manifest.Issue{Severity: manifest.SeverityWarning, File: o.File, Line: o.Line,
			Object: o.Key, Field: p.Field, Message: p.Message})
		if changed[o.Key] {
			events = append(events, &store.Event{ObjectKey: o.Key, Type: corev1.EventTypeWarning, Reason: p.Reason,
				Message: fmt.Sprintf("%s: %s", p.Field, p.Message)})
		}
	}
	return issues, events
}

// ingressStatus is where an Ingress is served: every node serves every
// Ingress, on the nodes' addresses.
func ingressStatus(nodes []*store.Node) networkingv1.IngressStatus {
	var ips []string
	for _, n := range nodes {
		if !nodeReady(n.Node) {
			continue
		}
		for _, a := range n.Node.Status.Addresses {
			if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
				ips = append(ips, a.Address)
				break
			}
		}
	}
	sort.Strings(ips)
	var st networkingv1.IngressStatus
	for _, ip := range ips {
		st.LoadBalancer.Ingress = append(st.LoadBalancer.Ingress, networkingv1.IngressLoadBalancerIngress{IP: ip})
	}
	return st
}
