package nodeagent

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func TestProbeStateTransitions(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	probe := func(period, success, failure, delay int32) *corev1.Probe {
		return &corev1.Probe{PeriodSeconds: period, SuccessThreshold: success, FailureThreshold: failure, InitialDelaySeconds: delay}
	}
	type step struct {
		kind probeKind
		ok   bool
		at   int // seconds after the start
		want probeVerdict
		// ready and started after the step
		ready, started bool
	}
	tests := []struct {
		name  string
		c     corev1.Container
		steps []step
	}{
		{
			name: "no probes: started and ready at once",
			steps: []step{
				{kind: liveness, ok: false, at: 1, want: verdictNone, ready: true, started: true},
			},
		},
		{
			name: "liveness kills after failureThreshold consecutive failures",
			c:    corev1.Container{LivenessProbe: probe(1, 0, 2, 0)},
			steps: []step{
				{kind: liveness, ok: false, at: 1, want: verdictFailed, ready: true, started: true},
				{kind: liveness, ok: true, at: 2, want: verdictNone, ready: true, started: true},
				{kind: liveness, ok: false, at: 3, want: verdictFailed, ready: true, started: true},
				{kind: liveness, ok: false, at: 4, want: verdictKill, ready: true, started: true},
			},
		},
		{
			name: "liveness default threshold is 3",
			c:    corev1.Container{LivenessProbe: &corev1.Probe{}},
			steps: []step{
				{kind: liveness, ok: false, at: 10, want: verdictFailed, ready: true, started: true},
				{kind: liveness, ok: false, at: 20, want: verdictNone, ready: true, started: true},
				{kind: liveness, ok: false, at: 30, want: verdictKill, ready: true, started: true},
			},
		},
		{
			name: "readiness starts false, flips both ways with thresholds",
			c:    corev1.Container{ReadinessProbe: probe(1, 2, 2, 0)},
			steps: []step{
				{kind: readiness, ok: true, at: 1, want: verdictNone, started: true},
				{kind: readiness, ok: true, at: 2, want: verdictChanged, ready: true, started: true},
				{kind: readiness, ok: false, at: 3, want: verdictFailed, ready: true, started: true},
				{kind: readiness, ok: false, at: 4, want: verdictChanged, started: true},
				{kind: readiness, ok: false, at: 5, want: verdictNone, started: true},
				{kind: readiness, ok: true, at: 6, want: verdictNone, started: true},
				{kind: readiness, ok: true, at: 7, want: verdictChanged, ready: true, started: true},
			},
		},
		{
			name: "readiness failing from the start reports its threshold once",
			c:    corev1.Container{ReadinessProbe: probe(1, 1, 2, 0)},
			steps: []step{
				{kind: readiness, ok: false, at: 1, want: verdictFailed, started: true},
				{kind: readiness, ok: false, at: 2, want: verdictFailed, started: true},
				{kind: readiness, ok: false, at: 3, want: verdictNone, started: true},
			},
		},
		{
			name: "results before the initial delay are ignored",
			c:    corev1.Container{LivenessProbe: probe(1, 0, 1, 5)},
			steps: []step{
				{kind: liveness, ok: false, at: 4, want: verdictNone, ready: true, started: true},
				{kind: liveness, ok: false, at: 5, want: verdictKill, ready: true, started: true},
			},
		},
		{
			name: "startup holds liveness and readiness until it succeeds",
			c:    corev1.Container{StartupProbe: probe(1, 0, 5, 0), LivenessProbe: probe(1, 0, 1, 0), ReadinessProbe: probe(1, 0, 1, 0)},
			steps: []step{
				{kind: liveness, ok: false, at: 1, want: verdictNone},
				{kind: readiness, ok: true, at: 1, want: verdictNone},
				{kind: startup, ok: false, at: 1, want: verdictFailed},
				{kind: startup, ok: true, at: 2, want: verdictChanged, started: true},
				{kind: startup, ok: false, at: 3, want: verdictNone, started: true},
				{kind: readiness, ok: true, at: 3, want: verdictChanged, ready: true, started: true},
				{kind: liveness, ok: false, at: 4, want: verdictKill, ready: true, started: true},
			},
		},
		{
			name: "a failing startup probe kills",
			c:    corev1.Container{StartupProbe: probe(1, 0, 2, 0)},
			steps: []step{
				{kind: startup, ok: false, at: 1, want: verdictFailed},
				{kind: startup, ok: false, at: 2, want: verdictKill},
			},
		},
		{
			name: "postStart results are not probe results",
			c:    corev1.Container{LivenessProbe: probe(1, 0, 1, 0)},
			steps: []step{
				{kind: postStart, ok: false, at: 1, want: verdictNone, ready: true, started: true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newProbeState(&tt.c, t0)
			for i, st := range tt.steps {
				got := s.record(st.kind, st.ok, t0.Add(time.Duration(st.at)*time.Second))
				if got != st.want || s.ready() != st.ready || s.started() != st.started {
					t.Fatalf("step %d (%s ok=%t at %ds): verdict %d ready %t started %t, want %d %t %t",
						i, st.kind, st.ok, st.at, got, s.ready(), s.started(), st.want, st.ready, st.started)
				}
			}
		})
	}
}

func TestProbeSettingsDefaults(t *testing.T) {
	got := settingsOf(&corev1.Probe{SuccessThreshold: 3}, liveness)
	want := probeSettings{period: 10 * time.Second, timeout: time.Second, success: 1, failure: 3}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(probeSettings{})); d != "" {
		t.Errorf("liveness defaults (-want +got):\n%s", d)
	}
	got = settingsOf(&corev1.Probe{SuccessThreshold: 3, PeriodSeconds: 2, TimeoutSeconds: 5, FailureThreshold: 7, InitialDelaySeconds: 4}, readiness)
	want = probeSettings{initialDelay: 4 * time.Second, period: 2 * time.Second, timeout: 5 * time.Second, success: 3, failure: 7}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(probeSettings{})); d != "" {
		t.Errorf("readiness settings (-want +got):\n%s", d)
	}
}

func TestProbePorts(t *testing.T) {
	ports := []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}
	tests := []struct {
		port    intstr.IntOrString
		want    int
		wantErr bool
	}{
		{intstr.FromInt32(80), 80, false},
		{intstr.FromString("http"), 8080, false},
		{intstr.FromString("9090"), 9090, false},
		{intstr.FromString("nope"), 0, true},
		{intstr.FromInt32(0), 0, true},
	}
	for _, tt := range tests {
		got, err := resolvePort(tt.port, ports)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("resolvePort(%s) = %d, %v; want %d, error %t", tt.port.String(), got, err, tt.want, tt.wantErr)
		}
	}
	c := &corev1.Container{Name: "app", Ports: ports, ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{
		HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromString("metrics")},
	}}}
	if err := checkProbePorts(c); err == nil || err.Error() != `container app: readinessProbe httpGet: port "metrics" is not a named port of the container` {
		t.Errorf("checkProbePorts: %v", err)
	}
	c.ReadinessProbe = nil
	c.Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("x")}}}
	if err := checkProbePorts(c); err == nil {
		t.Errorf("checkProbePorts accepted a preStop with an unknown port name")
	}
}

// TestNetworkProbes runs httpGet, tcpSocket and grpc probes against local
// servers (no container needed).
func TestNetworkProbes(t *testing.T) {
	var gotHeader string
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Probe") != "" {
			gotHeader = r.Header.Get("X-Probe") + " " + r.Host
		}
	})
	mux.HandleFunc("/bad", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://192.0.2.1/", http.StatusFound)
	})
	plain := httptest.NewServer(mux)
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(mux)
	defer tlsSrv.Close()
	port := func(u string) int32 {
		_, p, _ := net.SplitHostPort(strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://"))
		n, _ := strconv.Atoi(p)
		return int32(n)
	}

	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	go func() { _ = gs.Serve(lis) }()
	defer gs.Stop()
	grpcPort := int32(lis.Addr().(*net.TCPAddr).Port)

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedPort := int32(closed.Addr().(*net.TCPAddr).Port)
	closed.Close()

	target := probeTarget{host: "127.0.0.1", ports: []corev1.ContainerPort{{Name: "web", ContainerPort: port(plain.URL)}}}
	down := "down"
	tests := []struct {
		name    string
		h       corev1.ProbeHandler
		ok      bool
		wantOut string
	}{
		{"http by port name with headers", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("web"),
			HTTPHeaders: []corev1.HTTPHeader{{Name: "X-Probe", Value: "yes"}, {Name: "Host", Value: "example.test"}}}}, true, ""},
		{"http 500", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/bad", Port: intstr.FromInt32(port(plain.URL))}}, false, "HTTP probe failed with statuscode: 500"},
		{"http redirect is success", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/moved", Port: intstr.FromInt32(port(plain.URL))}}, true, ""},
		{"https without verification", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ok", Scheme: corev1.URISchemeHTTPS, Port: intstr.FromInt32(port(tlsSrv.URL))}}, true, ""},
		{"http unknown port name", corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ok", Port: intstr.FromString("nope")}}, false, `port "nope"`},
		{"tcp open", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString("web")}}, true, ""},
		{"tcp refused", corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(closedPort)}}, false, "refused"},
		{"grpc serving", corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: grpcPort}}, true, ""},
		{"grpc not serving", corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: grpcPort, Service: &down}}, false, "NOT_SERVING"},
		{"grpc refused", corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: closedPort}}, false, "failed to connect"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ok, out := target.probe(context.Background(), tt.h, 2*time.Second)
			if ok != tt.ok || !strings.Contains(out, tt.wantOut) {
				t.Errorf("probe = %t %q, want %t containing %q", ok, out, tt.ok, tt.wantOut)
			}
		})
	}
	if gotHeader != "yes example.test" {
		t.Errorf("headers seen by the server: %q", gotHeader)
	}
	hook := &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/bad", Port: intstr.FromString("web")}}
	if err := target.hook(context.Background(), hook); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("httpGet hook on a 500: %v", err)
	}
}
