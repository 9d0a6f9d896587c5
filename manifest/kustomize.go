package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	sigsyaml "sigs.k8s.io/yaml"
)

// kustResult is the cached output of one kustomization directory, with the
// state of every path the build looked at: it stays valid while none of them
// changes.
type kustResult struct {
	result *fileResult
	deps   map[string]string
}

func (k *kustResult) valid(t *tree) bool {
	if k.deps == nil {
		return false
	}
	for p, st := range k.deps {
		if t.state(p) != st || strings.HasPrefix(st, "nohash") {
			return false
		}
	}
	return true
}

// state fingerprints what the repository holds at p. Paths starting with
// "ls:" fingerprint a whole directory listing.
func (t *tree) state(p string) string {
	if dir, ok := strings.CutPrefix(p, "ls:"); ok {
		h := sha256.New()
		keys := make([]string, 0)
		for fp := range t.files {
			if under(fp, dir) {
				keys = append(keys, fp)
			}
		}
		sort.Strings(keys)
		for _, fp := range keys {
			fmt.Fprintf(h, "%s\x00%s\x00", fp, t.state(fp))
		}
		return hex.EncodeToString(h.Sum(nil))
	}
	if f := t.files[p]; f != nil {
		if f.Mode&fs.ModeSymlink != 0 {
			return "l:" + f.Target
		}
		if f.Hash == "" {
			return "nohash"
		}
		return "f:" + f.Hash
	}
	if t.dirs[p] {
		return "d"
	}
	return "-"
}

// kfs is the kustomize file system over a revision: an in-memory file
// system holding the directories, into which files are copied when
// kustomize first asks for them. It records what was asked so the result
// can be cached.
type kfs struct {
	filesys.FileSystem
	t       *tree
	limit   int64
	deps    map[string]string
	written map[string]bool
}

func newKfs(t *tree, limit int64) (*kfs, error) {
	mem := filesys.MakeFsInMemory()
	for d := range t.dirs {
		if d == "." {
			continue
		}
		if err := mem.MkdirAll("/" + d); err != nil {
			return nil, fmt.Errorf("preparing kustomize file system: %w", err)
		}
	}
	return &kfs{FileSystem: mem, t: t, limit: limit, deps: map[string]string{}, written: map[string]bool{}}, nil
}

func (k *kfs) rel(p string) string {
	p = filepath.ToSlash(p)
	r := cleanPath(p)
	if r == "" {
		return "."
	}
	return r
}

func (k *kfs) record(rel string) { k.deps[rel] = k.t.state(rel) }

// ensure copies the file at rel (following symlinks inside the root) into
// the in-memory file system.
func (k *kfs) ensure(rel string) error {
	k.record(rel)
	if k.written[rel] {
		return nil
	}
	f := k.t.files[rel]
	if f == nil {
		return nil
	}
	real := rel
	if f.Mode&fs.ModeSymlink != 0 {
		var err error
		real, f, err = k.t.resolve(rel)
		if err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
		k.record(real)
	}
	if f.Size > k.limit {
		return fmt.Errorf("%s: file is too large: %d bytes, the limit is %d bytes", rel, f.Size, k.limit)
	}
	data, err := k.t.read(real)
	if err != nil {
		return err
	}
	if int64(len(data)) > k.limit {
		return fmt.Errorf("%s: file is too large: %d bytes, the limit is %d bytes", rel, len(data), k.limit)
	}
	k.written[rel] = true
	if err := k.FileSystem.WriteFile("/"+rel, data); err != nil {
		return fmt.Errorf("%s: %w", rel, err)
	}
	return nil
}

func (k *kfs) ensureUnder(dir string) error {
	k.record("ls:" + dir)
	for p := range k.t.files {
		if under(p, dir) {
			if err := k.ensure(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (k *kfs) Open(p string) (filesys.File, error) {
	if err := k.ensure(k.rel(p)); err != nil {
		return nil, err
	}
	return k.FileSystem.Open(p)
}

func (k *kfs) ReadFile(p string) ([]byte, error) {
	if err := k.ensure(k.rel(p)); err != nil {
		return nil, err
	}
	return k.FileSystem.ReadFile(p)
}

func (k *kfs) Exists(p string) bool {
	r := k.rel(p)
	k.record(r)
	return k.t.files[r] != nil || k.t.dirs[r]
}

func (k *kfs) IsDir(p string) bool {
	r := k.rel(p)
	k.record(r)
	return k.t.dirs[r]
}

func (k *kfs) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	if err := k.ensure(k.rel(p)); err != nil {
		return "", "", err
	}
	return k.FileSystem.CleanedAbs(p)
}

func (k *kfs) ReadDir(p string) ([]string, error) {
	if err := k.ensureUnder(k.rel(p)); err != nil {
		return nil, err
	}
	return k.FileSystem.ReadDir(p)
}

func (k *kfs) Glob(pattern string) ([]string, error) {
	if err := k.ensureUnder("."); err != nil {
		return nil, err
	}
	return k.FileSystem.Glob(pattern)
}

func (k *kfs) Walk(p string, fn filepath.WalkFunc) error {
	if err := k.ensureUnder(k.rel(p)); err != nil {
		return err
	}
	return k.FileSystem.Walk(p, fn)
}

// Writes are refused: a build must not change the revision.
func (k *kfs) Create(p string) (filesys.File, error) { return nil, errReadOnly }
func (k *kfs) WriteFile(p string, _ []byte) error    { return errReadOnly }
func (k *kfs) RemoveAll(p string) error              { return errReadOnly }

var errReadOnly = errors.New("the repository is read-only during a kustomize build")

// kustomizationFile returns the kustomization file of dir, or "".
func (t *tree) kustomizationFile(dir string) string {
	for _, n := range kustomizationNames {
		p := n
		if dir != "." {
			p = dir + "/" + n
		}
		if t.files[p] != nil {
			return p
		}
	}
	return ""
}

// isRemote reports whether a kustomize resource entry names something
// kustomize would fetch over the network.
func isRemote(entry string) bool {
	e := strings.ToLower(entry)
	switch {
	case strings.Contains(e, "://"), strings.HasPrefix(e, "git@"), strings.Contains(e, "?ref="),
		strings.HasPrefix(e, "github.com/"), strings.HasPrefix(e, "gitlab.com/"), strings.HasPrefix(e, "bitbucket.org/"):
		return true
	}
	return false
}

// kustomizationRefs is the part of a kustomization that names other files
// and directories.
type kustomizationRefs struct {
	Resources  []string `json:"resources"`
	Bases      []string `json:"bases"`
	Components []string `json:"components"`
}

// precheck walks the kustomizations reachable from dir and reports remote
// bases and missing files with the line of the kustomization that names them.
func precheck(t *tree, dir string, seen map[string]bool, r *fileResult) {
	if seen[dir] || len(seen) > 1000 {
		return
	}
	seen[dir] = true
	kf := t.kustomizationFile(dir)
	if kf == "" {
		return
	}
	real, _, err := t.resolve(kf)
	if err != nil {
		r.errorf(kf, 0, "", "", "%v", err)
		return
	}
	data, err := t.read(real)
	if err != nil {
		r.errorf(kf, 0, "", "", "%v", err)
		return
	}
	if !checkText(kf, data, r) {
		return
	}
	var refs kustomizationRefs
	if err := sigsyaml.Unmarshal(data, &refs); err != nil {
		// kustomize reports the details.
		return
	}
	lineOf := func(entry string) int {
		for i, l := range strings.Split(string(data), "\n") {
			if strings.Contains(l, entry) {
				return i + 1
			}
		}
		return 1
	}
	for _, list := range []struct {
		field   string
		entries []string
	}{{"resources", refs.Resources}, {"bases", refs.Bases}, {"components", refs.Components}} {
		for _, e := range list.entries {
			if isRemote(e) {
				r.errorf(kf, lineOf(e), "", list.field, "remote kustomize base %q is not supported: Keelson builds without network access; copy it into the repository", e)
				continue
			}
			if path.IsAbs(e) {
				r.errorf(kf, lineOf(e), "", list.field, "%q: absolute paths are not allowed", e)
				continue
			}
			rel := cleanPath(path.Join(dir, e))
			switch {
			case rel == "":
				r.errorf(kf, lineOf(e), "", list.field, "%q points outside the repository", e)
			case t.dirs[rel]:
				precheck(t, rel, seen, r)
			case t.files[rel] != nil:
			default:
				r.errorf(kf, lineOf(e), "", list.field, "%q: no such file or directory in the repository", e)
			}
		}
	}
}

// buildKustomization renders the kustomization in dir and decodes its
// output. Objects get File = the kustomization file and Line = 1.
func buildKustomization(t *tree, dir string, opts Options) (kr *kustResult) {
	kf := t.kustomizationFile(dir)
	r := &fileResult{}
	kr = &kustResult{result: r}
	defer func() {
		if p := recover(); p != nil {
			kr = &kustResult{result: &fileResult{issues: []Issue{{Severity: SeverityError, File: kf, Line: 1,
				Message: fmt.Sprintf("kustomize build failed: %v", p)}}}}
		}
	}()
	precheck(t, dir, map[string]bool{}, r)
	if len(r.issues) > 0 {
		return kr
	}
	k, err := newKfs(t, opts.MaxFileSize)
	if err != nil {
		r.errorf(kf, 1, "", "", "%v", err)
		return kr
	}
	ko := krusty.MakeDefaultOptions()
	ko.LoadRestrictions = kusttypes.LoadRestrictionsNone
	rm, err := krusty.MakeKustomizer(ko).Run(k, "/"+strings.TrimPrefix(dir, "."))
	kr.deps = k.deps
	if err != nil {
		r.errorf(kf, 1, "", "", "kustomize build failed: %s", strings.ReplaceAll(err.Error(), "\n", " "))
		return kr
	}
	for _, res := range rm.Resources() {
		js, err := res.MarshalJSON()
		if err != nil {
			r.errorf(kf, 1, res.CurId().String(), "", "kustomize output: %v", err)
			continue
		}
		decodeValue(kf, js, nil, 1, r)
	}
	return kr
}
