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
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/keelson/keelson/internal/imagebuild"
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
			files := []imagebuild.File{
				{Name: "bin/", Mode: 0o755, Dir: true},
				{Name: "bin/busybox", Mode: 0o755, Data: bin},
			}
			for _, a := range busyboxApplets {
				files = append(files, imagebuild.File{Name: "bin/" + a, Link: "busybox"})
			}
			files = append(files, imagebuild.BaseFiles()...)
			return imagebuild.Image(files, v1.Config{
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
			data, err := imagebuild.GoBinary(src)
			if err != nil {
				return nil, err
			}
			files := append(imagebuild.BaseFiles(), imagebuild.File{Name: "testapp", Mode: 0o755, Data: data})
			return imagebuild.Image(files, v1.Config{
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
	if err := imagebuild.WriteArchive(ref, img, path); err != nil {
		return "", err
	}
	return path, nil
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
