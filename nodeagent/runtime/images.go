package runtime

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd"
	"github.com/containerd/containerd/content"
	"github.com/containerd/containerd/errdefs"
	"github.com/containerd/containerd/images"
	"github.com/containerd/containerd/remotes/docker"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	corev1 "k8s.io/api/core/v1"
)

// NormalizeRef applies the usual reference rules: "redis" is
// "docker.io/library/redis:latest", a missing tag is ":latest", digests are kept.
func NormalizeRef(ref string) (string, error) {
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w: %w", ref, errdefs.ErrInvalidArgument, err)
	}
	return named.String(), nil
}

// ImportArchive imports the images of an OCI image layout tarball or a `docker save`
// tarball at path, unpacks them for the snapshotter and returns their names.
func (r *Runtime) ImportArchive(ctx context.Context, path string) ([]string, error) {
	ctx = r.ctx(ctx)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("import image archive %s: %w", path, err)
	}
	defer f.Close()
	imgs, err := r.client.Import(ctx, f, containerd.WithImportPlatform(platforms.Default()))
	if err != nil {
		return nil, fmt.Errorf("import image archive %s: %w", path, classify(err))
	}
	var names []string
	for _, img := range imgs {
		image := containerd.NewImageWithPlatform(r.client, img, platforms.Default())
		if err := image.Unpack(ctx, r.opts.Snapshotter); err != nil {
			return names, fmt.Errorf("import image archive %s: unpack %s: %w", path, img.Name, classify(err))
		}
		names = append(names, img.Name)
	}
	r.log.Info("imported image archive", "path", path, "images", names)
	return names, nil
}

// ImportDir imports every *.tar file in dir (the k3s convention <data-dir>/images/). A
// missing dir imports nothing. It imports what it can and returns all failures joined.
func (r *Runtime) ImportDir(ctx context.Context, dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return nil, fmt.Errorf("import images from %s: %w", dir, err)
	}
	sort.Strings(files)
	var names []string
	var errs []error
	for _, f := range files {
		n, err := r.ImportArchive(ctx, f)
		names = append(names, n...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	return names, errors.Join(errs...)
}

// EnsureImage makes the image ref present and unpacked according to the pull policy, as
// kubelet does: Never fails with ErrImageNeverPull if the image is absent, IfNotPresent
// pulls only if it is absent, Always (and the empty policy) pulls. Callers apply
// Kubernetes' default (":latest" or no tag means Always, otherwise IfNotPresent).
//
// Pulls use HTTPS, or plain HTTP for registries on 127.0.0.1, localhost, ::1 and those in
// Options.InsecureRegistries; creds supplies registry credentials. progress, if not nil,
// is called about every second during a pull with the bytes done and the total known.
// Pull failures wrap ErrImageNotFound, ErrRegistryUnavailable or ErrRegistryUnauthorized.
func (r *Runtime) EnsureImage(ctx context.Context, ref string, policy corev1.PullPolicy, creds Credentials, progress func(string)) (containerd.Image, error) {
	ctx = r.ctx(ctx)
	name, err := NormalizeRef(ref)
	if err != nil {
		return nil, err
	}
	if policy != corev1.PullAlways && policy != "" {
		img, err := r.client.GetImage(ctx, name)
		switch {
		case err == nil:
			if err := r.ensureUnpacked(ctx, img); err != nil {
				return nil, err
			}
			return img, nil
		case !errdefs.IsNotFound(err):
			return nil, fmt.Errorf("image %s: %w", name, classify(err))
		case policy == corev1.PullNever:
			return nil, fmt.Errorf("image %s: %w", name, ErrImageNeverPull)
		}
	}
	return r.pull(ctx, name, creds, progress)
}

func (r *Runtime) ensureUnpacked(ctx context.Context, img containerd.Image) error {
	ok, err := img.IsUnpacked(ctx, r.opts.Snapshotter)
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Name(), classify(err))
	}
	if !ok {
		if err := img.Unpack(ctx, r.opts.Snapshotter); err != nil {
			return fmt.Errorf("image %s: unpack: %w", img.Name(), classify(err))
		}
	}
	return nil
}

func (r *Runtime) pull(ctx context.Context, name string, creds Credentials, progress func(string)) (containerd.Image, error) {
	start := time.Now()
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: r.registryHosts(creds)})
	var (
		mu    sync.Mutex
		descs = map[string]ocispec.Descriptor{}
	)
	opts := []containerd.RemoteOpt{
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(r.opts.Snapshotter),
		containerd.WithPlatformMatcher(platforms.Default()),
		containerd.WithImageHandler(images.HandlerFunc(func(_ context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			mu.Lock()
			descs[d.Digest.String()] = d
			mu.Unlock()
			return nil, nil
		})),
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	if progress != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(time.Second)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					mu.Lock()
					ds := make([]ocispec.Descriptor, 0, len(descs))
					for _, d := range descs {
						ds = append(ds, d)
					}
					mu.Unlock()
					done, total := pullProgress(ctx, r.client.ContentStore(), ds)
					progress(fmt.Sprintf("pulling %s: %s of %s", name, humanBytes(done), humanBytes(total)))
				}
			}
		}()
	}
	img, err := r.client.Pull(ctx, name, opts...)
	close(stop)
	wg.Wait()
	if err != nil {
		return nil, fmt.Errorf("pull image %s: %w", name, classifyPull(err))
	}
	r.log.Info("pulled image", "image", name, "took", time.Since(start).Round(time.Millisecond))
	return img, nil
}

// pullProgress sums the bytes present (complete blobs plus active ingests) and the total
// size of the descriptors seen so far.
func pullProgress(ctx context.Context, cs content.Store, ds []ocispec.Descriptor) (done, total int64) {
	active := map[string]int64{}
	if sts, err := cs.ListStatuses(ctx); err == nil {
		for _, s := range sts {
			if s.Expected != "" {
				active[s.Expected.String()] = s.Offset
			}
		}
	}
	for _, d := range ds {
		total += d.Size
		if off, ok := active[d.Digest.String()]; ok {
			done += off
		} else if _, err := cs.Info(ctx, d.Digest); err == nil {
			done += d.Size
		}
	}
	return done, total
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// classifyPull maps pull failures to the package's error kinds.
func classifyPull(err error) error {
	s := err.Error()
	var nerr net.Error
	switch {
	case errdefs.IsUnavailable(err) && strings.Contains(s, "containerd"):
		return classify(err)
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%w: %w", ErrImageNotFound, err)
	case strings.Contains(s, "401 Unauthorized") || strings.Contains(s, "403 Forbidden") ||
		errors.Is(err, docker.ErrInvalidAuthorization):
		return fmt.Errorf("%w: %w", ErrRegistryUnauthorized, err)
	case errors.As(err, &nerr), strings.Contains(s, "connection refused"), strings.Contains(s, "no such host"),
		strings.Contains(s, "i/o timeout"), strings.Contains(s, "dial tcp"), strings.Contains(s, "connection reset"),
		strings.Contains(s, "server gave HTTP response to HTTPS client"), strings.Contains(s, "tls:"),
		strings.Contains(s, "502 Bad Gateway"), strings.Contains(s, "503 Service Unavailable"),
		strings.Contains(s, "500 Internal Server Error"), strings.Contains(s, "504 Gateway Timeout"):
		return fmt.Errorf("%w: %w", ErrRegistryUnavailable, err)
	}
	return classify(err)
}

// registryHosts resolves a registry name to how to reach it.
func (r *Runtime) registryHosts(creds Credentials) docker.RegistryHosts {
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: 30 * time.Second,
		MaxIdleConns:          10,
		IdleConnTimeout:       30 * time.Second,
	}
	client := &http.Client{Transport: transport}
	return func(host string) ([]docker.RegistryHost, error) {
		scheme := "https"
		if r.insecure(host) {
			scheme = "http"
		}
		apiHost := host
		if host == "docker.io" {
			apiHost = "registry-1.docker.io"
		}
		authz := docker.NewDockerAuthorizer(
			docker.WithAuthClient(client),
			docker.WithAuthCreds(func(string) (string, string, error) {
				u, p, _ := creds.Lookup(host)
				return u, p, nil
			}),
		)
		return []docker.RegistryHost{{
			Client:       client,
			Authorizer:   authz,
			Host:         apiHost,
			Scheme:       scheme,
			Path:         "/v2",
			Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
		}}, nil
	}
}

// insecure tells whether host (host or host:port) may be reached over plain HTTP.
func (r *Runtime) insecure(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	switch h {
	case "127.0.0.1", "localhost", "::1":
		return true
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return true
	}
	for _, ir := range r.opts.InsecureRegistries {
		if ir == host || ir == h {
			return true
		}
	}
	return false
}

// Credentials are registry credentials by registry host. The zero value has none. Its
// String and LogValue show hosts only, never secrets.
type Credentials struct {
	auths map[string]authEntry
}

type authEntry struct {
	user, pass string
}

// ParseDockerConfig reads a docker config.json ({"auths":{"host":{"auth":
// "base64(user:pass)"}}}, the kubernetes.io/dockerconfigjson Secret format; "username"
// and "password" fields are accepted too) or the older .dockercfg form (the auths map
// alone).
func ParseDockerConfig(data []byte) (Credentials, error) {
	type entry struct {
		Auth     string `json:"auth"`
		Username string `json:"username"`
		Password string `json:"password"`
	}
	var cfg struct {
		Auths map[string]entry `json:"auths"`
	}
	if err := json.Unmarshal(data, &cfg); err != nil {
		return Credentials{}, fmt.Errorf("docker config: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	if cfg.Auths == nil {
		var legacy map[string]entry
		if err := json.Unmarshal(data, &legacy); err == nil {
			cfg.Auths = legacy
		}
	}
	c := Credentials{auths: map[string]authEntry{}}
	for host, e := range cfg.Auths {
		a := authEntry{user: e.Username, pass: e.Password}
		if e.Auth != "" {
			raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(e.Auth))
			if err != nil {
				return Credentials{}, fmt.Errorf("docker config: auth of %s is not base64: %w", host, errdefs.ErrInvalidArgument)
			}
			u, p, ok := strings.Cut(string(raw), ":")
			if !ok {
				return Credentials{}, fmt.Errorf("docker config: auth of %s is not user:password: %w", host, errdefs.ErrInvalidArgument)
			}
			a = authEntry{user: u, pass: p}
		}
		c.auths[normalizeRegistryHost(host)] = a
	}
	return c, nil
}

// Merge returns credentials with both sets; o wins for hosts in both.
func (c Credentials) Merge(o Credentials) Credentials {
	out := Credentials{auths: map[string]authEntry{}}
	for h, a := range c.auths {
		out.auths[h] = a
	}
	for h, a := range o.auths {
		out.auths[h] = a
	}
	return out
}

// Lookup returns the credentials for a registry host (as in image references: docker.io,
// 127.0.0.1:5000).
func (c Credentials) Lookup(host string) (user, pass string, ok bool) {
	a, ok := c.auths[normalizeRegistryHost(host)]
	return a.user, a.pass, ok
}

// Hosts lists the registries that have credentials.
func (c Credentials) Hosts() []string {
	hs := make([]string, 0, len(c.auths))
	for h := range c.auths {
		hs = append(hs, h)
	}
	sort.Strings(hs)
	return hs
}

func (c Credentials) String() string { return "credentials for " + strings.Join(c.Hosts(), ",") }

// LogValue keeps secrets out of logs.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

// normalizeRegistryHost turns "https://index.docker.io/v1/" and friends into "docker.io"
// and strips schemes and paths elsewhere.
func normalizeRegistryHost(h string) string {
	h = strings.TrimSpace(strings.ToLower(h))
	h = strings.TrimPrefix(h, "https://")
	h = strings.TrimPrefix(h, "http://")
	h, _, _ = strings.Cut(h, "/")
	switch h {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com", "docker.io":
		return "docker.io"
	}
	return h
}
