package reconciler

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/store"
)

var clk0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func svcYAML(name, spec string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\nspec:\n%s", name, spec)
}

const webPorts = "  selector: {app: web}\n  ports:\n  - {name: http, port: 80, targetPort: http}\n"

func serviceOf(t *testing.T, st *store.Store, name string) *corev1.Service {
	t.Helper()
	o, err := st.Snapshot().Object(memdb.NewWatchSet(), "Service/default/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return o.Obj.(*corev1.Service)
}

func TestParseServiceNetwork(t *testing.T) {
	for _, tc := range []struct {
		cidr, ports, pool string
		want              string // error substring, or "" for success
	}{
		{"", "", "", ""},
		{"10.100.0.0/16", "30000-30010", "192.168.50.0/29,192.168.60.7", ""},
		{"fd00::/108", "", "", "want an IPv4 CIDR"},
		{"10.0.0.0/30", "", "", "at least 16 addresses"},
		{"", "32000-31000", "", "--node-port-range"},
		{"", "", "10.96.1.0/24", "overlaps --service-cidr"},
		{"", "", "bogus", "--loadbalancer-pool"},
	} {
		_, err := ParseServiceNetwork(tc.cidr, tc.ports, tc.pool)
		if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("ParseServiceNetwork(%q, %q, %q) = %v, want %q", tc.cidr, tc.ports, tc.pool, err, tc.want)
		}
	}
}

func TestServiceAllocation(t *testing.T) {
	a, st := newApplier(t)
	n, err := ParseServiceNetwork("10.97.0.0/24", "31000-31002", "192.168.77.8/30")
	if err != nil {
		t.Fatal(err)
	}
	a.SetServiceNetwork(n)
	files := map[string]string{
		"web.yaml":  svcYAML("web", webPorts),
		"db.yaml":   svcYAML("db", "  clusterIP: 10.97.0.10\n  selector: {app: db}\n  ports:\n  - {port: 5432}\n"),
		"np.yaml":   svcYAML("np", "  type: NodePort\n  selector: {app: web}\n  ports:\n  - {name: a, port: 80}\n  - {name: b, port: 81, nodePort: 31001}\n"),
		"lb.yaml":   svcYAML("lb", "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n  selector: {app: web}\n  ports:\n  - {port: 443}\n"),
		"head.yaml": svcYAML("head", "  clusterIP: None\n  selector: {app: db}\n  ports:\n  - {port: 5432}\n"),
	}
	rec, err := a.Apply(revision("c1", files), clk0)
	if err != nil || len(rec.Errors) > 0 {
		t.Fatalf("apply: %v %v", err, rec.Errors)
	}
	web := serviceOf(t, st, "web")
	ip, _ := netip.ParseAddr(web.Spec.ClusterIP)
	if !n.CIDR.Contains(ip) || web.Spec.ClusterIP == "10.97.0.0" || web.Spec.ClusterIP == "10.97.0.255" {
		t.Errorf("web got %q, want an address inside %s", web.Spec.ClusterIP, n.CIDR)
	}
	if got := serviceOf(t, st, "db").Spec.ClusterIP; got != "10.97.0.10" {
		t.Errorf("db got %s, want the requested 10.97.0.10", got)
	}
	if got := serviceOf(t, st, "head").Spec.ClusterIP; got != corev1.ClusterIPNone {
		t.Errorf("headless got %s", got)
	}
	np := serviceOf(t, st, "np")
	if np.Spec.Ports[1].NodePort != 31001 || np.Spec.Ports[0].NodePort < 31000 || np.Spec.Ports[0].NodePort > 31002 || np.Spec.Ports[0].NodePort == 31001 {
		t.Errorf("node ports %d %d", np.Spec.Ports[0].NodePort, np.Spec.Ports[1].NodePort)
	}
	if np.Spec.ExternalTrafficPolicy != corev1.ServiceExternalTrafficPolicyCluster {
		t.Errorf("externalTrafficPolicy not defaulted: %q", np.Spec.ExternalTrafficPolicy)
	}
	lb := serviceOf(t, st, "lb")
	if got := lbIP(lb); got != "192.168.77.9" {
		t.Errorf("lb ingress %q, want the pool's first usable address 192.168.77.9", got)
	}
	if lb.Spec.Ports[0].NodePort != 0 {
		t.Errorf("allocateLoadBalancerNodePorts=false got node port %d", lb.Spec.Ports[0].NodePort)
	}

	// A changed service keeps its address; an unchanged one is not touched.
	webIP := web.Spec.ClusterIP
	npPort := np.Spec.Ports[0].NodePort
	files["web.yaml"] = svcYAML("web", webPorts+"  sessionAffinity: ClientIP\n")
	files["np.yaml"] = strings.Replace(files["np.yaml"], "port: 80}", "port: 8080}", 1)
	if rec, err := a.Apply(revision("c2", files), clk0); err != nil || len(rec.Errors) > 0 {
		t.Fatalf("apply c2: %v %v", err, rec.Errors)
	}
	web = serviceOf(t, st, "web")
	if web.Spec.ClusterIP != webIP {
		t.Errorf("changed service moved from %s to %s", webIP, web.Spec.ClusterIP)
	}
	if got := *web.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds; got != 10800 {
		t.Errorf("affinity timeout defaulted to %d", got)
	}
	if got := serviceOf(t, st, "np").Spec.Ports[0].NodePort; got != npPort {
		t.Errorf("changed port's node port moved from %d to %d", npPort, got)
	}

	// Requests that cannot be met reject the revision, naming file and field.
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"outside range", "x.yaml", svcYAML("x", "  clusterIP: 10.1.2.3\n  ports:\n  - {port: 1}\n"),
			"x.yaml:1: Service/default/x: spec.clusterIP: 10.1.2.3 is not in the service range 10.97.0.0/24"},
		{"taken", "x.yaml", svcYAML("x", "  clusterIP: 10.97.0.10\n  ports:\n  - {port: 1}\n"),
			"spec.clusterIP: 10.97.0.10 is already allocated to Service default/db"},
		{"node port taken", "x.yaml", svcYAML("x", "  type: NodePort\n  ports:\n  - {port: 1, nodePort: 31001}\n"),
			"spec.ports[0].nodePort: 31001/TCP is already in use by Service default/np"},
		{"node port range", "x.yaml", svcYAML("x", "  type: NodePort\n  ports:\n  - {port: 1, nodePort: 30500}\n"),
			"spec.ports[0].nodePort: 30500 is outside the node port range 31000-31002"},
		{"node ports exhausted", "x.yaml", svcYAML("x", "  type: NodePort\n  ports:\n  - {name: a, port: 1}\n  - {name: b, port: 2}\n"),
			"spec.ports[1].nodePort: the node port range 31000-31002 is exhausted"},
		{"lb not in pool", "x.yaml", svcYAML("x", "  type: LoadBalancer\n  loadBalancerIP: 10.9.9.9\n  ports:\n  - {port: 1}\n"),
			"spec.loadBalancerIP: 10.9.9.9 is not in the LoadBalancer pool 192.168.77.8/30"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := map[string]string{}
			for k, v := range files {
				bad[k] = v
			}
			bad[tc.file] = tc.content
			rec, err := a.Apply(revision("bad-"+tc.name, bad), clk0)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Status != store.RevisionFailed || len(rec.Errors) == 0 || !strings.Contains(rec.Errors[0].String(), tc.want) {
				t.Fatalf("status %s, errors %v; want %q", rec.Status, rec.Errors, tc.want)
			}
			if got := serviceOf(t, st, "web").Spec.ClusterIP; got != webIP {
				t.Errorf("a rejected revision changed web's address to %s", got)
			}
			if _, err := st.Snapshot().Object(memdb.NewWatchSet(), "Service/default/x"); err == nil {
				t.Errorf("a rejected revision's service is in the store")
			}
		})
	}

	// An exhausted pool leaves a LoadBalancer pending with an event, and
	// does not reject the revision.
	files["lb2.yaml"] = svcYAML("lb2", "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n  ports:\n  - {port: 1}\n")
	files["lb3.yaml"] = svcYAML("lb3", "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n  ports:\n  - {port: 1}\n")
	if rec, err := a.Apply(revision("c3", files), clk0); err != nil || len(rec.Errors) > 0 {
		t.Fatalf("apply c3: %v %v", err, rec.Errors)
	}
	got := []string{lbIP(serviceOf(t, st, "lb")), lbIP(serviceOf(t, st, "lb2")), lbIP(serviceOf(t, st, "lb3"))}
	if diff := cmp.Diff([]string{"192.168.77.9", "192.168.77.10", ""}, got); diff != "" {
		t.Errorf("LoadBalancer addresses (-want +got):\n%s", diff)
	}
	evs, _ := st.Snapshot().Events(memdb.NewWatchSet(), "Service/default/lb3")
	if len(evs) == 0 || !strings.Contains(evs[0].Message, "exhausted") {
		t.Errorf("no AllocationFailed event for lb3: %+v", evs)
	}
	// Removing a service frees its address for the next one.
	delete(files, "lb.yaml")
	if rec, err := a.Apply(revision("c4", files), clk0); err != nil || len(rec.Errors) > 0 {
		t.Fatalf("apply c4: %v %v", err, rec.Errors)
	}
	delete(files, "lb2.yaml")
	files["lb3.yaml"] += "  - {name: b, port: 2}\n"
	files["lb3.yaml"] = strings.Replace(files["lb3.yaml"], "{port: 1}", "{name: a, port: 1}", 1)
	if rec, err := a.Apply(revision("c5", files), clk0); err != nil || len(rec.Errors) > 0 {
		t.Fatalf("apply c5: %v %v", err, rec.Errors)
	}
	if got := lbIP(serviceOf(t, st, "lb3")); got == "" {
		t.Errorf("lb3 still pending after addresses were freed")
	}
}

func TestClusterIPStableAcrossControllers(t *testing.T) {
	// A restarted controller starts from an empty store: each service must
	// get the address it had, whatever the order they arrive in.
	files := map[string]string{}
	for i := range 50 {
		files[fmt.Sprintf("s%d.yaml", i)] = svcYAML(fmt.Sprintf("s%d", i), "  ports:\n  - {port: 80}\n")
	}
	first := map[string]string{}
	a, st := newApplier(t)
	if rec, err := a.Apply(revision("c1", files), clk0); err != nil || len(rec.Errors) > 0 {
		t.Fatal(err, rec.Errors)
	}
	for i := range 50 {
		first[fmt.Sprint(i)] = serviceOf(t, st, fmt.Sprintf("s%d", i)).Spec.ClusterIP
	}
	// The second controller sees them arrive one commit at a time.
	a2, st2 := newApplier(t)
	part := map[string]string{}
	for i := 49; i >= 0; i-- {
		part[fmt.Sprintf("s%d.yaml", i)] = files[fmt.Sprintf("s%d.yaml", i)]
		if rec, err := a2.Apply(revision(fmt.Sprint("p", i), part), clk0); err != nil || len(rec.Errors) > 0 {
			t.Fatal(err, rec.Errors)
		}
	}
	for i := range 50 {
		if got := serviceOf(t, st2, fmt.Sprintf("s%d", i)).Spec.ClusterIP; got != first[fmt.Sprint(i)] {
			t.Errorf("s%d: %s on one controller, %s on another", i, first[fmt.Sprint(i)], got)
		}
	}
}

func readyPod(name, ip string, ready bool, labels map[string]string, ports ...corev1.ContainerPort) *store.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: labels, UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: "n1", Containers: []corev1.Container{{Name: "c", Ports: ports}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip,
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
	return store.NewPod(p)
}

type epSummary struct {
	Ports []string
	Ready []string
	Not   []string
}

func summarize(e *store.Endpoints) []epSummary {
	var out []epSummary
	for _, s := range e.Slices {
		var sum epSummary
		for _, p := range s.Ports {
			sum.Ports = append(sum.Ports, fmt.Sprintf("%s/%d", *p.Name, *p.Port))
		}
		for _, ep := range s.Endpoints {
			if *ep.Conditions.Ready {
				sum.Ready = append(sum.Ready, ep.Addresses[0])
			} else {
				sum.Not = append(sum.Not, ep.Addresses[0])
			}
		}
		out = append(out, sum)
	}
	return out
}

func TestComputeEndpoints(t *testing.T) {
	web := map[string]string{"app": "web"}
	httpPort := func(n int32) corev1.ContainerPort { return corev1.ContainerPort{Name: "http", ContainerPort: n} }
	svc := func(spec string) *store.Object {
		s := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
			Spec: corev1.ServiceSpec{Selector: web, Ports: []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}}}}
		switch spec {
		case "named":
			s.Spec.Ports[0].TargetPort.Type = 1
			s.Spec.Ports[0].TargetPort.StrVal = "http"
		case "number":
			s.Spec.Ports[0].TargetPort.IntVal = 8080
		}
		return &store.Object{Key: "Service/default/web", Kind: "Service", Namespace: "default", Name: "web", Obj: s}
	}
	for _, tc := range []struct {
		name    string
		svc     *store.Object
		pods    []*store.Pod
		deleted map[string]bool
		want    []epSummary
		events  []string
	}{
		{"ready and not ready", svc("number"), []*store.Pod{
			readyPod("a", "10.1.0.2", true, web), readyPod("b", "10.1.0.3", false, web), readyPod("c", "10.1.0.4", true, map[string]string{"app": "db"}),
		}, nil, []epSummary{{Ports: []string{"http/8080"}, Ready: []string{"10.1.0.2"}, Not: []string{"10.1.0.3"}}}, nil},
		{"named port resolves per pod", svc("named"), []*store.Pod{
			readyPod("a", "10.1.0.2", true, web, httpPort(8080)), readyPod("b", "10.1.0.3", true, web, httpPort(9090)), readyPod("c", "10.1.0.4", true, web),
		}, nil, []epSummary{{Ports: []string{"http/8080"}, Ready: []string{"10.1.0.2"}}, {Ports: []string{"http/9090"}, Ready: []string{"10.1.0.3"}}},
			[]string{`PortNotFound: spec.ports[0].targetPort "http": no container of pod c has a port with that name`}},
		{"deleted pods leave at once", svc("number"), []*store.Pod{
			readyPod("a", "10.1.0.2", true, web), readyPod("b", "10.1.0.3", true, web),
		}, map[string]bool{"default/a": true}, []epSummary{{Ports: []string{"http/8080"}, Ready: []string{"10.1.0.3"}}}, nil},
		{"no pods", svc("number"), nil, nil, []epSummary{},
			[]string{"NoReadyEndpoints: no pod matches the selector app=web: connections are refused"}},
		{"pods without an address yet", svc("number"), []*store.Pod{readyPod("a", "", false, web)}, nil, []epSummary{},
			[]string{"NoReadyEndpoints: no pod matches the selector app=web: connections are refused"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := computeEndpoints([]*store.Object{tc.svc}, tc.pods, tc.deleted, nil, nil)
			if len(plan.upserts) != 1 {
				t.Fatalf("%d upserts", len(plan.upserts))
			}
			got := summarize(plan.upserts[0])
			if got == nil {
				got = []epSummary{}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("slices (-want +got):\n%s", diff)
			}
			var evs []string
			for _, e := range plan.events {
				evs = append(evs, e.Reason+": "+e.Message)
			}
			if diff := cmp.Diff(tc.events, evs); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
			// The same input again changes nothing.
			again := computeEndpoints([]*store.Object{tc.svc}, tc.pods, tc.deleted, nil, plan.upserts)
			if len(again.upserts)+len(again.deletes)+len(again.events) != 0 {
				t.Errorf("second pass not empty: %+v", again)
			}
		})
	}
	// A removed service's endpoints go.
	plan := computeEndpoints(nil, nil, nil, nil, []*store.Endpoints{{Key: "default/old"}})
	if diff := cmp.Diff([]string{"default/old"}, plan.deletes); diff != "" {
		t.Errorf("deletes (-want +got):\n%s", diff)
	}
}

func TestEndpointsFollowReadiness(t *testing.T) {
	c, a, st, clk := clusterFixture(t)
	register(t, c, "n1")
	files := map[string]string{"web.yaml": deploy3, "svc.yaml": svcYAML("web", "  selector: {app: web}\n  ports:\n  - {port: 80}\n")}
	if _, err := a.Apply(revision("c1", files), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	ps := podsOf(t, st)
	if len(ps) != 3 {
		t.Fatalf("%d pods", len(ps))
	}
	report := func(p *store.Pod, ip string, ready bool) {
		rp := readyPod(p.Name, ip, ready, p.Labels()).Object()
		rp.UID = p.UID
		if err := c.ReportPod(context.Background(), "n1", rp); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range ps {
		report(p, fmt.Sprintf("10.244.0.%d", i+2), true)
	}
	settle(t, c)
	e, err := st.Snapshot().EndpointsOf(memdb.NewWatchSet(), "default/web")
	if err != nil {
		t.Fatal(err)
	}
	if got := readyCount(e.Slices); got != 3 {
		t.Fatalf("%d ready endpoints, want 3: %+v", got, summarize(e))
	}
	report(ps[0], "10.244.0.2", false)
	settle(t, c)
	e, _ = st.Snapshot().EndpointsOf(memdb.NewWatchSet(), "default/web")
	if diff := cmp.Diff([]epSummary{{Ports: []string{"/80"}, Ready: []string{"10.244.0.3", "10.244.0.4"}, Not: []string{"10.244.0.2"}}}, summarize(e)); diff != "" {
		t.Errorf("after a readiness flip (-want +got):\n%s", diff)
	}
	// The service leaves Git: its endpoints go.
	delete(files, "svc.yaml")
	if _, err := a.Apply(revision("c2", files), clk.t); err != nil {
		t.Fatal(err)
	}
	settle(t, c)
	if _, err := st.Snapshot().EndpointsOf(memdb.NewWatchSet(), "default/web"); err == nil {
		t.Errorf("endpoints of a removed service remain")
	}
}
