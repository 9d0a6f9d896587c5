// Package testimages builds the container images that Keelson's tests and benchmarks run,
// without any network: a busybox image from Debian's busybox-static (/bin/busybox) and the
// testapp image from examples/testapp (a static Go binary).
//
// Images are written as `docker save` archives (go-containerregistry's tarball format),
// which containerd's Import and `ctr images import` accept, and which can also be pushed to
// a registry (see Image). Each archive is built at most once per process and cached under
// os.TempDir()/keelson-testimages keyed by a hash of its inputs, so reruns are fast.
//
// All functions are safe for concurrent use.
package testimages

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Stable image references of the test images.
const (
	// BusyboxRef is Debian's static busybox with applet links in /bin; CMD is ["sh"].
	BusyboxRef = "keelson.test/busybox:1"
	// TestappRef is examples/testapp as /testapp; ENTRYPOINT is ["/testapp"], port 8080.
	TestappRef = "keelson.test/testapp:1"
)

// BusyboxPath is where the busybox binary is taken from (Debian's busybox-static).
const BusyboxPath = "/bin/busybox"

// generatorVersion changes the cache key whenever the way images are built changes.
const generatorVersion = "v2"

// busyboxApplets are linked to /bin/busybox in the busybox image.
var busyboxApplets = []string{
	"sh", "sleep", "cat", "echo", "ls", "env", "id", "hostname", "wget", "nc", "true",
	"false", "kill", "ps", "dd", "tail", "head", "grep", "mkdir", "rm", "touch", "printf",
	"test", "[", "date", "seq", "yes", "wc", "sed", "awk", "stat", "mount", "whoami",
}

// Images holds the paths of image archives.
type Images struct {
	Busybox string // archive of BusyboxRef
	Testapp string // archive of TestappRef
}

var (
	mu    sync.Mutex
	built = map[string]string{} // ref -> archive path
)

// Build writes the archives of all test images into dir (for instance a node's
// <data-dir>/images) and returns their paths.
func Build(tb testing.TB, dir string) Images {
	tb.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("testimages: %v", err)
	}
	out := Images{
		Busybox: filepath.Join(dir, "busybox.tar"),
		Testapp: filepath.Join(dir, "testapp.tar"),
	}
	for src, dst := range map[string]string{Busybox(tb): out.Busybox, Testapp(tb): out.Testapp} {
		if err := copyFile(src, dst); err != nil {
			tb.Fatalf("testimages: %v", err)
		}
	}
	return out
}

// Busybox returns the path of the busybox image archive, building it if needed.
func Busybox(tb testing.TB) string {
	tb.Helper()
	p, err := BusyboxArchive()
	if err != nil {
		tb.Fatalf("testimages: %v", err)
	}
	return p
}

// Testapp returns the path of the testapp image archive, building it if needed.
func Testapp(tb testing.TB) string {
	tb.Helper()
	p, err := TestappArchive()
	if err != nil {
		tb.Fatalf("testimages: %v", err)
	}
	return p
}

// Image loads the image ref (BusyboxRef or TestappRef) as a go-containerregistry image,
// for instance to push it to a registry with remote.Write.
func Image(tb testing.TB, ref string) v1.Image {
	tb.Helper()
	var p string
	switch ref {
	case BusyboxRef:
		p = Busybox(tb)
	case TestappRef:
		p = Testapp(tb)
	default:
		tb.Fatalf("testimages: unknown image %q", ref)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		tb.Fatalf("testimages: %v", err)
	}
	img, err := tarball.ImageFromPath(p, &tag)
	if err != nil {
		tb.Fatalf("testimages: load %s: %v", ref, err)
	}
	return img
}

// BusyboxArchive is Busybox for callers without a testing.TB (benchmark tools).
func BusyboxArchive() (string, error) {
	return once(BusyboxRef, func() (string, error) {
		bin, err := os.ReadFile(BusyboxPath)
		if err != nil {
			return "", fmt.Errorf("read busybox (install busybox-static): %w", err)
		}
		key := hashOf([]byte(generatorVersion), []byte(BusyboxRef), bin)
		return cached("busybox", key, func() (v1.Image, error) {
			files := []tarEntry{
				{name: "bin/", mode: 0o755, dir: true},
				{name: "bin/busybox", mode: 0o755, data: bin},
			}
			for _, a := range busyboxApplets {
				files = append(files, tarEntry{name: "bin/" + a, link: "busybox"})
			}
			files = append(files, baseFiles()...)
			return buildImage(files, v1.Config{
				Cmd: []string{"sh"},
				Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
			})
		})
	})
}

// TestappArchive is Testapp for callers without a testing.TB.
func TestappArchive() (string, error) {
	return once(TestappRef, func() (string, error) {
		src := filepath.Join(repoRoot(), "examples", "testapp")
		mainGo, err := os.ReadFile(filepath.Join(src, "main.go"))
		if err != nil {
			return "", fmt.Errorf("read testapp source: %w", err)
		}
		key := hashOf([]byte(generatorVersion), []byte(TestappRef), []byte(runtime.Version()), mainGo)
		return cached("testapp", key, func() (v1.Image, error) {
			tmp, err := os.MkdirTemp("", "testapp-build-")
			if err != nil {
				return nil, err
			}
			defer os.RemoveAll(tmp)
			bin := filepath.Join(tmp, "testapp")
			cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, ".")
			cmd.Dir = src
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				return nil, fmt.Errorf("build testapp: %w: %s", err, out)
			}
			data, err := os.ReadFile(bin)
			if err != nil {
				return nil, err
			}
			files := append(baseFiles(), tarEntry{name: "testapp", mode: 0o755, data: data})
			return buildImage(files, v1.Config{
				Entrypoint:   []string{"/testapp"},
				Env:          []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
				ExposedPorts: map[string]struct{}{"8080/tcp": {}},
				StopSignal:   "SIGTERM",
			})
		})
	})
}

func once(ref string, build func() (string, error)) (string, error) {
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[ref]; ok {
		return p, nil
	}
	p, err := build()
	if err != nil {
		return "", fmt.Errorf("image %s: %w", ref, err)
	}
	built[ref] = p
	return p, nil
}

// cached returns the archive for key under the cache directory, building it with build
// if it is not there yet.
func cached(base, key string, build func() (v1.Image, error)) (string, error) {
	dir := filepath.Join(os.TempDir(), "keelson-testimages")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, base+"-"+key[:16]+".tar")
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	img, err := build()
	if err != nil {
		return "", err
	}
	ref := map[string]string{"busybox": BusyboxRef, "testapp": TestappRef}[base]
	tag, err := name.NewTag(ref)
	if err != nil {
		return "", err
	}
	f, err := os.CreateTemp(dir, base+"-*.tmp")
	if err != nil {
		return "", err
	}
	defer os.Remove(f.Name())
	if err := tarball.Write(tag, img, f); err != nil {
		f.Close()
		return "", fmt.Errorf("write archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

type tarEntry struct {
	name string
	mode int64
	dir  bool
	link string // symlink target
	data []byte
}

func baseFiles() []tarEntry {
	return []tarEntry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/passwd", mode: 0o644, data: []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")},
		{name: "etc/group", mode: 0o644, data: []byte("root:x:0:\nnogroup:x:65534:\n")},
		{name: "tmp/", mode: 0o1777, dir: true},
		{name: "root/", mode: 0o700, dir: true},
		{name: "proc/", mode: 0o755, dir: true},
		{name: "sys/", mode: 0o755, dir: true},
		{name: "dev/", mode: 0o755, dir: true},
	}
}

// buildImage makes a single-layer linux/amd64 (host architecture) image.
func buildImage(files []tarEntry, cfg v1.Config) (v1.Image, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mtime := time.Unix(0, 0)
	for _, f := range files {
		h := &tar.Header{Name: f.name, Mode: f.mode, ModTime: mtime, Uid: 0, Gid: 0, Format: tar.FormatPAX}
		switch {
		case f.dir:
			h.Typeflag = tar.TypeDir
		case f.link != "":
			h.Typeflag = tar.TypeSymlink
			h.Linkname = f.link
			h.Mode = 0o777
		default:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if len(f.data) > 0 {
			if _, err := tw.Write(f.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerBytes)), nil
	})
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = runtime.GOARCH
	cf.OS = "linux"
	cf.Config = cfg
	cf.Created = v1.Time{Time: mtime}
	return mutate.ConfigFile(img, cf)
}

func hashOf(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:", len(p))
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// repoRoot is the repository root, found from this source file's location.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp := dst + ".tmp"
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
