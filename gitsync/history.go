package gitsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/keelson/keelson/manifest"
)

// ChangeKind says how a commit changed an object.
type ChangeKind string

const (
	ChangeAdded   ChangeKind = "Added"
	ChangeChanged ChangeKind = "Changed"
	ChangeRemoved ChangeKind = "Removed"
	// ChangeInvalid: the object's files did not decode at the commit (the
	// revision was rejected); Error says why.
	ChangeInvalid ChangeKind = "Invalid"
)

// ObjectChange is a commit that changed an object's desired state.
type ObjectChange struct {
	Commit Commit     `json:"commit"`
	Change ChangeKind `json:"change"`
	// Hash is the object's desired-state hash at the commit (as
	// manifest.Object.Hash and store.Object.Hash); empty when removed or
	// invalid.
	Hash string `json:"hash,omitempty"`
	// Images are the images of the object's pod template at the commit
	// (Deployments, DaemonSets, StatefulSets, ReplicaSets, Jobs, CronJobs,
	// Pods), in container order.
	Images []string `json:"images,omitempty"`
	// Error is the first error of the object's files, when invalid.
	Error string `json:"error,omitempty"`
}

// ObjectLog is what History.Object answers.
type ObjectLog struct {
	// Start is the commit the history was read from (the synced one).
	Start string
	// Paths are what was followed: the object's file, or its
	// kustomization's directory and the paths outside it that the
	// kustomization names.
	Paths []string
	// Changes are newest first.
	Changes []ObjectChange
	// Truncated is set when the walk stopped at MaxHistoryCommits commits
	// before reaching the limit or the first commit.
	Truncated bool
}

// MaxHistoryCommits bounds how many commits that touched an object's files
// History.Object decodes for one question.
const MaxHistoryCommits = 1000

// maxDecodedSets bounds History's cache of decoded file sets.
const maxDecodedSets = 1024

// History answers which commits changed an object, for `rollout history`.
// It decodes the object's files at each commit that touched them with the
// manifest package, so it sees what the controller saw: a commit that only
// moved or reformatted the object is not a change, a kustomization's output
// is compared and not its inputs. Decoded results are cached by the blob
// hashes of the files, so asking twice, or about another object of the same
// files, decodes nothing again.
//
// History is safe for concurrent use; decoding is done one question at a
// time, walking the commits is not (it takes the Repo's lock briefly, as
// Log does).
type History struct {
	repo *Repo

	mu     sync.Mutex // guards the fields below; held while decoding
	loader *manifest.Loader
	cache  map[string]*decodedSet
	order  []string // cache keys, oldest first
}

// NewHistory returns the history of r's objects.
func NewHistory(r *Repo) *History {
	return &History{repo: r, loader: manifest.NewLoader(manifest.Options{}), cache: map[string]*decodedSet{}}
}

// objState is an object at a commit.
type objState struct {
	present bool
	hash    string
	images  []string
	invalid string // the first error, when the files did not decode
}

// decodedSet is what one set of files decodes to.
type decodedSet struct {
	objs     map[string]objState
	firstErr string // the first error that is not about a namespace declared elsewhere
	issues   []manifest.Issue
}

// objectError is the first error about the object key, if any.
func (d *decodedSet) objectError(key string) string {
	for _, is := range d.issues {
		if is.Object != "" && sameObject(is.Object, key) {
			return is.String()
		}
	}
	return ""
}

// sameObject reports whether an issue's object (as written in the file,
// without the default namespace when the manifest names none) is key.
func sameObject(ref, key string) bool {
	if ref == key {
		return true
	}
	kind, rest, _ := strings.Cut(key, "/")
	_, name, ok := strings.Cut(rest, "/")
	return ok && ref == kind+"/"+name
}

// elsewhere reports whether an error is about something a partial set of
// files cannot know: a namespace declared in another file.
func elsewhere(is manifest.Issue) bool {
	return is.Field == "metadata.namespace" && strings.Contains(is.Message, "is not declared")
}

// Object lists the commits, newest first, that changed the object key
// (Kind/namespace/name) declared in file (relative to the sub-path, as
// store.Object.File; a kustomization file for kustomize output), starting
// from the synced commit (or start): at most limit changes (all when limit <= 0, up to
// MaxHistoryCommits commits that touched its files). A commit is a change
// when the object's hash differs from the one at its first parent (or it
// appears, disappears, or stops decoding), so commits that touched its file
// but not it are left out.
//
// start, when not empty, is the commit (a full SHA the clone holds) to read
// the history from instead of the synced one: the applied commit, when the
// synced one was rejected and no longer has the file.
func (h *History) Object(ctx context.Context, start, file, key string, limit int) (*ObjectLog, error) {
	fail := func(err error) (*ObjectLog, error) {
		return nil, fmt.Errorf("git source %s: history of %s (%s): %w", h.repo.src, key, file, err)
	}
	rev := h.repo.Last()
	if start != "" && (rev == nil || rev.Commit.SHA != start) {
		var err error
		if rev, err = h.repo.Resolve(ctx, start); err != nil {
			return fail(err)
		}
	}
	if rev == nil {
		return fail(errors.New("not synced yet"))
	}
	file = cleanPath(file)
	if file == "" {
		return fail(fmt.Errorf("bad file name"))
	}
	paths, err := followedPaths(rev.Files, file)
	if err != nil {
		return fail(err)
	}
	out := &ObjectLog{Start: rev.Commit.SHA, Paths: paths}
	w, err := h.repo.walkPaths(rev.Commit.SHA, paths, true)
	if err != nil {
		return fail(err)
	}
	defer w.close()
	touched := 0
	for !w.done && (limit <= 0 || len(out.Changes) < limit) {
		if touched >= MaxHistoryCommits {
			out.Truncated = true
			break
		}
		batch, err := w.next(ctx, min(16, MaxHistoryCommits-touched))
		if err != nil {
			return fail(err)
		}
		for _, pc := range batch {
			touched++
			cur, err := h.state(pc.Files, key)
			if err != nil {
				return fail(fmt.Errorf("commit %s: %w", pc.Commit.SHA, err))
			}
			var prev objState
			if pc.ParentFiles != nil {
				if prev, err = h.state(pc.ParentFiles, key); err != nil {
					return fail(fmt.Errorf("commit %s: %w", pc.Commit.SHA, err))
				}
			}
			ch, ok := compareStates(prev, cur)
			if !ok {
				continue
			}
			oc := ObjectChange{Commit: pc.Commit, Change: ch, Hash: cur.hash, Images: cur.images, Error: cur.invalid}
			out.Changes = append(out.Changes, oc)
			if limit > 0 && len(out.Changes) >= limit {
				break
			}
		}
	}
	return out, nil
}

// compareStates says how an object changed from prev to cur, if it did.
func compareStates(prev, cur objState) (ChangeKind, bool) {
	switch {
	case cur.invalid != "":
		return ChangeInvalid, prev.invalid != cur.invalid
	case cur.present && !prev.present && prev.invalid == "":
		return ChangeAdded, true
	case cur.present:
		return ChangeChanged, prev.invalid != "" || prev.hash != cur.hash
	case prev.present || prev.invalid != "":
		return ChangeRemoved, true
	}
	return "", false
}

// state decodes files (from the cache when it can) and returns the object
// key in them.
func (h *History) state(files []manifest.File, key string) (objState, error) {
	if len(files) == 0 {
		return objState{}, nil
	}
	d := digestFiles(files)
	h.mu.Lock()
	defer h.mu.Unlock()
	set, ok := h.cache[d]
	if !ok {
		var readErr error
		wrapped := make([]manifest.File, len(files))
		for i, f := range files {
			read := f.Read
			f.Read = func() ([]byte, error) {
				b, err := read()
				if err != nil && readErr == nil {
					readErr = err
				}
				return b, err
			}
			wrapped[i] = f
		}
		res := h.loader.Load(wrapped)
		if readErr != nil {
			// The clone failed, not the manifests: say so, and do not
			// remember it.
			return objState{}, readErr
		}
		set = &decodedSet{objs: make(map[string]objState, len(res.Objects))}
		for _, o := range res.Objects {
			set.objs[o.Key()] = objState{present: true, hash: o.Hash, images: podImages(o.Obj)}
		}
		for _, is := range res.Errors {
			if elsewhere(is) {
				continue
			}
			if set.firstErr == "" {
				set.firstErr = is.String()
			}
			set.issues = append(set.issues, is)
		}
		if len(h.order) >= maxDecodedSets {
			delete(h.cache, h.order[0])
			h.order = h.order[1:]
		}
		h.cache[d] = set
		h.order = append(h.order, d)
	}
	if s, ok := set.objs[key]; ok {
		if e := set.objectError(key); e != "" {
			return objState{invalid: e}, nil
		}
		return s, nil
	}
	if set.firstErr != "" {
		// Without the object and with errors: the files did not decode.
		return objState{invalid: set.firstErr}, nil
	}
	return objState{}, nil
}

// digestFiles fingerprints a set of files by path, mode and blob hash.
func digestFiles(files []manifest.File) string {
	keys := make([]string, len(files))
	for i, f := range files {
		keys[i] = fmt.Sprintf("%s\x00%o\x00%s\x00%s", f.Path, f.Mode, f.Hash, f.Target)
	}
	sort.Strings(keys)
	s := sha256.Sum256([]byte(strings.Join(keys, "\x01")))
	return hex.EncodeToString(s[:])
}

// followedPaths is what the history of an object declared in file follows,
// from the files of the synced revision: the file itself (and a symlink's
// target), or for a kustomization file its directory and every path outside
// it that the kustomizations it reaches name (bases, components, patches).
func followedPaths(files []manifest.File, file string) ([]string, error) {
	byPath := make(map[string]*manifest.File, len(files))
	dirs := map[string]bool{}
	for i := range files {
		f := &files[i]
		byPath[f.Path] = f
		for d := path.Dir(f.Path); d != "." && !dirs[d]; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	f := byPath[file]
	if f == nil {
		return nil, fmt.Errorf("%s is not in the commit: %w", file, fs.ErrNotExist)
	}
	switch base := path.Base(file); base {
	case "kustomization.yaml", "kustomization.yml", "Kustomization":
	default:
		paths := []string{file}
		if f.Mode&fs.ModeSymlink != 0 {
			if t := cleanPath(path.Join(path.Dir(file), f.Target)); t != "" && t != file {
				paths = append(paths, t)
			}
		}
		return paths, nil
	}
	dir := path.Dir(file)
	if dir == "." {
		return []string{""}, nil
	}
	set := map[string]bool{dir: true}
	seen := map[string]bool{}
	var visit func(dir string)
	visit = func(dir string) {
		if seen[dir] || len(seen) > 100 {
			return
		}
		seen[dir] = true
		var kf *manifest.File
		for _, n := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
			if kf = byPath[path.Join(dir, n)]; kf != nil {
				break
			}
		}
		if kf == nil || kf.Read == nil {
			return
		}
		data, err := kf.Read()
		if err != nil {
			return // the walk reads it again and reports
		}
		var doc any
		if err := sigsyaml.Unmarshal(data, &doc); err != nil {
			return
		}
		for _, s := range stringsOf(doc) {
			if !strings.Contains(s, "..") || strings.Contains(s, "://") || path.IsAbs(s) {
				continue
			}
			p := cleanPath(path.Join(dir, s))
			if p == "" || p == "." || byPath[p] == nil && !dirs[p] {
				continue
			}
			set[p] = true
			if dirs[p] {
				visit(p)
			}
		}
	}
	visit(dir)
	// Drop paths under other followed paths.
	var out []string
	for p := range set {
		covered := false
		for q := range set {
			if q != p && strings.HasPrefix(p, q+"/") {
				covered = true
				break
			}
		}
		if !covered {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	// The object's own directory first: it is what people asked about.
	if i := slices.Index(out, dir); i > 0 {
		out = append(append([]string{dir}, out[:i]...), out[i+1:]...)
	}
	return out, nil
}

// cleanPath makes a slash-separated path relative to the sub-path
// canonical; "" when it leaves it.
func cleanPath(p string) string {
	p = path.Clean(strings.TrimPrefix(p, "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return ""
	}
	return p
}

// stringsOf lists every string in a decoded YAML document.
func stringsOf(v any) []string {
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch x := v.(type) {
		case string:
			out = append(out, x)
		case []any:
			for _, e := range x {
				walk(e)
			}
		case map[string]any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

// podImages are the images of the containers of an object's pod template.
func podImages(obj runtime.Object) []string {
	var spec *corev1.PodSpec
	switch x := obj.(type) {
	case *appsv1.Deployment:
		spec = &x.Spec.Template.Spec
	case *appsv1.DaemonSet:
		spec = &x.Spec.Template.Spec
	case *appsv1.StatefulSet:
		spec = &x.Spec.Template.Spec
	case *appsv1.ReplicaSet:
		spec = &x.Spec.Template.Spec
	case *batchv1.Job:
		spec = &x.Spec.Template.Spec
	case *batchv1.CronJob:
		spec = &x.Spec.JobTemplate.Spec.Template.Spec
	case *corev1.Pod:
		spec = &x.Spec
	default:
		return nil
	}
	var out []string
	for _, c := range spec.Containers {
		out = append(out, c.Image)
	}
	return out
}
