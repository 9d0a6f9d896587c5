package nodeagent

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/keelson/keelson/nodeagent/runtime"
)

// probeKind is which of a container's probes a result is about.
type probeKind int

const (
	liveness probeKind = iota
	readiness
	startup
	// postStart is not a probe: the prober reports the postStart hook's
	// result through the same channel.
	postStart
)

func (k probeKind) String() string {
	switch k {
	case liveness:
		return "Liveness"
	case readiness:
		return "Readiness"
	case startup:
		return "Startup"
	default:
		return "PostStart"
	}
}

// probeSettings are a probe's timings and thresholds with kubelet's
// defaults applied.
type probeSettings struct {
	initialDelay, period, timeout time.Duration
	success, failure              int
}

func settingsOf(p *corev1.Probe, kind probeKind) probeSettings {
	s := probeSettings{
		initialDelay: time.Duration(p.InitialDelaySeconds) * time.Second,
		period:       10 * time.Second,
		timeout:      time.Second,
		success:      1,
		failure:      3,
	}
	if p.PeriodSeconds > 0 {
		s.period = time.Duration(p.PeriodSeconds) * time.Second
	}
	if p.TimeoutSeconds > 0 {
		s.timeout = time.Duration(p.TimeoutSeconds) * time.Second
	}
	if p.SuccessThreshold > 0 && kind == readiness {
		// Liveness and startup probes must use 1 (API validation).
		s.success = int(p.SuccessThreshold)
	}
	if p.FailureThreshold > 0 {
		s.failure = int(p.FailureThreshold)
	}
	return s
}

// probeTrack counts the consecutive results of one probe.
type probeTrack struct {
	set                 probeSettings
	successes, failures int
	// result is the probe's current verdict: healthy (liveness, true at
	// first), ready (readiness), started (startup).
	result bool
}

// probeState is what the probes of one container run concluded so far: the
// threshold counting and the transitions it leads to. It is pure (no
// goroutines, time comes in as arguments) and owned by the pod's worker.
type probeState struct {
	startedAt time.Time
	tracks    [3]*probeTrack // by probeKind; nil when the container has no such probe
}

// probeVerdict is what a recorded result asks the worker to do.
type probeVerdict int

const (
	verdictNone    probeVerdict = iota
	verdictFailed               // a failed attempt worth an Unhealthy event
	verdictChanged              // ready or started changed
	verdictKill                 // liveness or startup failed failureThreshold times
)

func newProbeState(c *corev1.Container, startedAt time.Time) *probeState {
	s := &probeState{startedAt: startedAt}
	for kind, p := range [3]*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p != nil {
			s.tracks[kind] = &probeTrack{set: settingsOf(p, probeKind(kind)), result: probeKind(kind) == liveness}
		}
	}
	return s
}

// record takes the result of an attempt begun at at. Results of liveness
// and readiness probes before the container started (per its startup
// probe), of attempts before the initial delay, and of a startup probe
// that already succeeded are ignored. A failure is reported
// (verdictFailed) when it begins a streak and when it reaches the
// threshold, not on every attempt, so that a probe failing for hours does
// not flood the events.
func (s *probeState) record(kind probeKind, ok bool, at time.Time) probeVerdict {
	if kind > startup {
		return verdictNone
	}
	t := s.tracks[kind]
	if t == nil || (kind != startup && !s.started()) || (kind == startup && t.result) {
		return verdictNone
	}
	if at.Before(s.startedAt.Add(t.set.initialDelay)) {
		return verdictNone
	}
	if ok {
		t.failures = 0
		t.successes++
		if !t.result && t.successes >= t.set.success {
			t.result = true
			return verdictChanged
		}
		return verdictNone
	}
	t.successes = 0
	t.failures++
	if t.failures < t.set.failure {
		if t.failures == 1 {
			return verdictFailed
		}
		return verdictNone
	}
	switch {
	case kind == readiness && t.result:
		t.result = false
		return verdictChanged
	case kind == liveness || kind == startup:
		t.result = false
		return verdictKill
	case t.failures == t.set.failure:
		return verdictFailed
	}
	return verdictNone
}

// started: the startup probe succeeded, or there is none.
func (s *probeState) started() bool {
	t := s.tracks[startup]
	return t == nil || t.result
}

// ready: started, and the readiness probe succeeded (or there is none).
func (s *probeState) ready() bool {
	t := s.tracks[readiness]
	return s.started() && (t == nil || t.result)
}

// probeResult is one probe attempt (or the postStart hook), sent by a
// container's prober to its worker.
type probeResult struct {
	name, id string
	kind     probeKind
	ok       bool
	output   string
	at       time.Time
}

// prober runs the postStart hook and then the probes of one container run,
// one goroutine per probe. The worker owns it: it starts it when the
// container starts (or is adopted), closes started when the startup probe
// succeeded (which releases the liveness and readiness probes and ends the
// startup probe), and stops it when the container exits or the pod goes.
type prober struct {
	cancel        context.CancelFunc
	started       chan struct{}
	startedClosed bool // owned by the worker
}

func (p *prober) markStarted() {
	if !p.startedClosed {
		p.startedClosed = true
		close(p.started)
	}
}

func (p *prober) stop() { p.cancel() }

// probeTarget is how probes and hooks reach one container run: its address
// (the pod IP) for network probes, the runtime for exec.
type probeTarget struct {
	rt    *runtime.Runtime
	id    string
	host  string
	ports []corev1.ContainerPort
}

// runProber is the prober's goroutine: the postStart hook first (when
// hook), then every probe on its period until ctx ends.
func runProber(ctx context.Context, t probeTarget, c *corev1.Container, startedAt time.Time, hook bool, started <-chan struct{}, out chan<- probeResult, now func() time.Time) {
	send := func(r probeResult) bool {
		r.name, r.id = c.Name, t.id
		select {
		case out <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if hook && c.Lifecycle != nil && c.Lifecycle.PostStart != nil {
		at := now()
		err := t.hook(ctx, c.Lifecycle.PostStart)
		r := probeResult{kind: postStart, ok: err == nil, at: at}
		if err != nil {
			r.output = err.Error()
		}
		if !send(r) || err != nil {
			return
		}
	}
	var wg sync.WaitGroup
	for kind, p := range [3]*corev1.Probe{c.LivenessProbe, c.ReadinessProbe, c.StartupProbe} {
		if p == nil {
			continue
		}
		kind := probeKind(kind)
		set := settingsOf(p, kind)
		wg.Go(func() {
			if kind != startup && c.StartupProbe != nil {
				select {
				case <-started:
				case <-ctx.Done():
					return
				}
			}
			if d := startedAt.Add(set.initialDelay).Sub(now()); d > 0 {
				if !sleepCtx(ctx, d) {
					return
				}
			}
			tick := time.NewTicker(set.period)
			defer tick.Stop()
			// Until a readiness probe first passes, it is tried again soon
			// (50 ms, doubling up to its period) rather than a whole period
			// later: a new pod takes traffic as soon as it answers, which is
			// what a rollout waits for. Only readiness: a startup or
			// liveness probe's failures count against the container.
			fast, passed := 50*time.Millisecond, false
			for {
				at := now()
				ok, output := t.probe(ctx, p.ProbeHandler, set.timeout)
				if ctx.Err() != nil || !send(probeResult{kind: kind, ok: ok, output: output, at: at}) {
					return
				}
				passed = passed || ok
				var wait <-chan time.Time = tick.C
				if kind == readiness && !passed && fast < set.period {
					timer := time.NewTimer(fast)
					wait = timer.C
					fast *= 2
					defer timer.Stop()
				}
				select {
				case <-ctx.Done():
					return
				case <-wait:
				}
				if kind == startup {
					select {
					case <-started:
						return
					default:
					}
				}
			}
		})
	}
	wg.Wait()
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// probe runs one attempt of a probe; output says why it failed.
func (t probeTarget) probe(ctx context.Context, h corev1.ProbeHandler, timeout time.Duration) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case h.Exec != nil:
		return t.exec(ctx, h.Exec.Command, timeout)
	case h.HTTPGet != nil:
		return t.httpGet(ctx, h.HTTPGet)
	case h.TCPSocket != nil:
		port, err := resolvePort(h.TCPSocket.Port, t.ports)
		if err != nil {
			return false, err.Error()
		}
		host := h.TCPSocket.Host
		if host == "" {
			host = t.host
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, err.Error()
		}
		_ = conn.Close()
		return true, ""
	case h.GRPC != nil:
		return t.grpc(ctx, h.GRPC)
	}
	return false, "probe has no handler"
}

// maxProbeOutput bounds what an exec probe's output keeps, as kubelet does.
const maxProbeOutput = 10 << 10

type limitedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := maxProbeOutput - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.TrimSpace(l.b.String())
}

// exec runs cmd in the container; exit code 0 is success.
func (t probeTarget) exec(ctx context.Context, cmd []string, timeout time.Duration) (bool, string) {
	var out limitedBuffer
	code, err := t.rt.Exec(ctx, t.id, cmd, false, nil, &out, &out)
	switch {
	case errors.Is(err, context.DeadlineExceeded) || (err != nil && ctx.Err() == context.DeadlineExceeded):
		return false, fmt.Sprintf("command %q timed out after %s", strings.Join(cmd, " "), timeout)
	case err != nil:
		return false, err.Error()
	case code != 0:
		msg := fmt.Sprintf("command %q exited with %d", strings.Join(cmd, " "), code)
		if s := out.String(); s != "" {
			msg += ": " + s
		}
		return false, msg
	}
	return true, out.String()
}

// httpGet requests the action's URL; 200–399 is success. HTTPS is not
// verified, and redirects are not followed (a 3xx is a success), as kubelet.
func (t probeTarget) httpGet(ctx context.Context, g *corev1.HTTPGetAction) (bool, string) {
	port, err := resolvePort(g.Port, t.ports)
	if err != nil {
		return false, err.Error()
	}
	host := g.Host
	if host == "" {
		host = t.host
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path)
	if err != nil {
		return false, err.Error()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "keelson-probe/1")
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // kubelet does not verify probe certificates
			DisableKeepAlives: true,
			Proxy:             nil,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	var body limitedBuffer
	_, _ = io.Copy(&body, io.LimitReader(resp.Body, maxProbeOutput))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, body.String()
	}
	return false, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

// grpc calls grpc.health.v1.Health/Check; SERVING is success.
func (t probeTarget) grpc(ctx context.Context, g *corev1.GRPCAction) (bool, string) {
	addr := net.JoinHostPort(t.host, strconv.Itoa(int(g.Port)))
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return false, fmt.Sprintf("failed to connect service %q: %v", addr, err)
	}
	defer conn.Close()
	var service string
	if g.Service != nil {
		service = *g.Service
	}
	// WaitForReady: keep connecting until the probe's timeout, as kubelet's
	// blocking dial does, rather than fail at the first refused attempt.
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service}, grpc.WaitForReady(true))
	if err != nil {
		if conn.GetState() != connectivity.Ready {
			return false, fmt.Sprintf("failed to connect service %q within %s: %v", addr, timeoutOf(ctx), err)
		}
		return false, fmt.Sprintf("health check of %q failed: %v", addr, err)
	}
	if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
		return false, fmt.Sprintf("service unhealthy (responded with %q)", s.String())
	}
	return true, ""
}

func timeoutOf(ctx context.Context) string {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d).Round(time.Second).String()
	}
	return "its timeout"
}

// resolvePort turns a port number or a container port's name into a number.
func resolvePort(p intstr.IntOrString, ports []corev1.ContainerPort) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n > 0 && n <= 65535 {
		return n, nil
	}
	return 0, fmt.Errorf("port %q is not a named port of the container", p.StrVal)
}

// checkProbePorts reports a probe or hook of c that names a port c does
// not have: the container cannot start (CreateContainerConfigError).
func checkProbePorts(c *corev1.Container) error {
	check := func(what string, port *intstr.IntOrString) error {
		if port == nil {
			return nil
		}
		if _, err := resolvePort(*port, c.Ports); err != nil {
			return fmt.Errorf("container %s: %s: %w", c.Name, what, err)
		}
		return nil
	}
	handler := func(what string, get *corev1.HTTPGetAction, tcp *corev1.TCPSocketAction) error {
		if get != nil {
			if err := check(what+" httpGet", &get.Port); err != nil {
				return err
			}
		}
		if tcp != nil {
			return check(what+" tcpSocket", &tcp.Port)
		}
		return nil
	}
	for _, p := range []struct {
		what  string
		probe *corev1.Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
		if p.probe != nil {
			if err := handler(p.what, p.probe.HTTPGet, p.probe.TCPSocket); err != nil {
				return err
			}
		}
	}
	if l := c.Lifecycle; l != nil {
		if h := l.PostStart; h != nil {
			if err := handler("postStart", h.HTTPGet, h.TCPSocket); err != nil {
				return err
			}
		}
		if h := l.PreStop; h != nil {
			if err := handler("preStop", h.HTTPGet, h.TCPSocket); err != nil {
				return err
			}
		}
	}
	return nil
}
