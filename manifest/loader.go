package manifest

import (
	"fmt"
	"io/fs"
	"path"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
)

// Options bound what a revision may hold. Zero values mean the defaults.
type Options struct {
	// MaxFileSize is the largest manifest file accepted (default 1 MiB).
	MaxFileSize int64
	// MaxObjects is the most objects a revision may hold (default 50,000).
	MaxObjects int
}

const (
	defaultMaxFileSize = 1 << 20
	defaultMaxObjects  = 50000
	// maxSymlinkHops bounds symlink chains (and loops).
	maxSymlinkHops = 16
)

// Loader decodes and validates revisions. It caches the decoded result of
// each file by path and File.Hash, so a commit that changes one file of
// thousands decodes only that file; entries not seen in the last Load are
// evicted. Cross-file checks (duplicates, namespaces, limits) run on every
// Load.
//
// A Loader is safe for use by one goroutine at a time. Load may use several
// goroutines internally and waits for them before it returns.
type Loader struct {
	opts  Options
	files map[string]*fileResult // key: cacheKey
	kusts map[string]*kustResult // key: kustomization directory
}

// NewLoader returns a Loader with opts (zero fields get their defaults).
func NewLoader(opts Options) *Loader {
	if opts.MaxFileSize <= 0 {
		opts.MaxFileSize = defaultMaxFileSize
	}
	if opts.MaxObjects <= 0 {
		opts.MaxObjects = defaultMaxObjects
	}
	return &Loader{opts: opts, files: map[string]*fileResult{}, kusts: map[string]*kustResult{}}
}

// tree indexes the files of one revision.
type tree struct {
	files map[string]*File
	dirs  map[string]bool
	// content memoizes reads within one Load, so a file read by both the
	// plain loader and kustomize is read once.
	mu      sync.Mutex
	content map[string]readResult
}

type readResult struct {
	data []byte
	err  error
}

func newTree(files []File) *tree {
	t := &tree{files: make(map[string]*File, len(files)), dirs: map[string]bool{".": true}, content: map[string]readResult{}}
	for i := range files {
		f := &files[i]
		p := cleanPath(f.Path)
		if p == "" || p == "." {
			continue
		}
		if _, dup := t.files[p]; dup {
			continue
		}
		t.files[p] = f
		for d := path.Dir(p); d != "." && !t.dirs[d]; d = path.Dir(d) {
			t.dirs[d] = true
		}
	}
	return t
}

// cleanPath makes a slash-separated relative path canonical; it returns ""
// for paths that leave the root.
func cleanPath(p string) string {
	p = path.Clean(strings.TrimPrefix(strings.ReplaceAll(p, "\\", "/"), "/"))
	if p == ".." || strings.HasPrefix(p, "../") {
		return ""
	}
	return p
}

// read returns the content of the regular file at p.
func (t *tree) read(p string) ([]byte, error) {
	t.mu.Lock()
	r, ok := t.content[p]
	t.mu.Unlock()
	if ok {
		return r.data, r.err
	}
	f := t.files[p]
	if f == nil {
		return nil, fmt.Errorf("%s: %w", p, fs.ErrNotExist)
	}
	if f.Read == nil {
		r.err = fmt.Errorf("%s: no content reader", p)
	} else {
		r.data, r.err = f.Read()
		if r.err != nil {
			r.err = fmt.Errorf("reading %s: %w", p, r.err)
		}
	}
	t.mu.Lock()
	t.content[p] = r
	t.mu.Unlock()
	return r.data, r.err
}

// errEscapes is returned for symlinks that point outside the root.
type linkError struct{ msg string }

func (e *linkError) Error() string { return e.msg }

// resolve follows symlinks from p to a regular file inside the root. It
// returns the final path, or an error saying why the link cannot be followed.
func (t *tree) resolve(p string) (string, *File, error) {
	for hop := 0; hop <= maxSymlinkHops; hop++ {
		f := t.files[p]
		if f == nil {
			if t.dirs[p] {
				return p, nil, &linkError{"symlink to a directory is not followed"}
			}
			return p, nil, &linkError{fmt.Sprintf("symlink target %q does not exist in the repository", p)}
		}
		if f.Mode&fs.ModeSymlink == 0 {
			return p, f, nil
		}
		target := strings.ReplaceAll(f.Target, "\\", "/")
		if target == "" {
			return p, nil, &linkError{"symlink has no target"}
		}
		if path.IsAbs(target) {
			return p, nil, &linkError{fmt.Sprintf("symlink points outside the repository (absolute target %q)", f.Target)}
		}
		next := path.Join(path.Dir(p), target)
		if next == ".." || strings.HasPrefix(next, "../") {
			return p, nil, &linkError{fmt.Sprintf("symlink points outside the repository (target %q)", f.Target)}
		}
		p = next
	}
	return p, nil, &linkError{"too many levels of symbolic links"}
}

// hidden reports whether any element of p starts with a dot.
func hidden(p string) bool {
	for _, part := range strings.Split(p, "/") {
		if strings.HasPrefix(part, ".") && part != "." {
			return true
		}
	}
	return false
}

// kustomizationNames are the file names that make a directory a kustomization.
var kustomizationNames = [...]string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

func isKustomizationName(name string) bool {
	for _, n := range kustomizationNames {
		if name == n {
			return true
		}
	}
	return false
}

// kustomizeRoots returns the topmost directories (outside hidden
// directories) that hold a kustomization file, sorted.
func (t *tree) kustomizeRoots() []string {
	all := map[string]bool{}
	for p := range t.files {
		if isKustomizationName(path.Base(p)) && !hidden(p) {
			all[path.Dir(p)] = true
		}
	}
	var roots []string
	for d := range all {
		top := true
		for a := path.Dir(d); d != "." && top; a = path.Dir(a) {
			if all[a] {
				top = false
			}
			if a == "." {
				break
			}
		}
		if top {
			roots = append(roots, d)
		}
	}
	sort.Strings(roots)
	return roots
}

// under reports whether p is inside directory dir ("." holds everything).
func under(p, dir string) bool {
	return dir == "." || strings.HasPrefix(p, dir+"/")
}

// job is one manifest file to decode.
type job struct {
	path   string // as listed in the revision
	real   string // after following symlinks
	file   *File
	key    string
	result *fileResult
}

// Load decodes and validates the files of one revision. It never returns
// nil and never panics; errors are in Result.Errors.
func (l *Loader) Load(files []File) (res *Result) {
	res = &Result{}
	defer func() {
		if r := recover(); r != nil {
			// Load must not take the process down on input we did not
			// foresee; the revision is rejected instead.
			res = &Result{Errors: []Issue{{Severity: SeverityError, File: ".", Message: fmt.Sprintf("internal error while loading the revision: %v", r)}}}
		}
	}()

	t := newTree(files)
	roots := t.kustomizeRoots()

	var perFile []*fileResult
	var jobs []*job
	paths := make([]string, 0, len(t.files))
	for p := range t.files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	nextFiles := make(map[string]*fileResult, len(paths))

	for _, p := range paths {
		if hidden(p) || !isManifestName(p) {
			continue
		}
		inKust := false
		for _, r := range roots {
			if under(p, r) {
				inKust = true
				break
			}
		}
		if inKust {
			continue
		}
		f := t.files[p]
		real, target, err := p, f, error(nil)
		if f.Mode&fs.ModeSymlink != 0 {
			real, target, err = t.resolve(p)
			if err != nil {
				perFile = append(perFile, &fileResult{issues: []Issue{{Severity: SeverityError, File: p, Message: err.Error()}}})
				continue
			}
		}
		if target.Mode&fs.ModeType != 0 && target.Mode&fs.ModeSymlink == 0 {
			continue // not a regular file (a submodule, a device): nothing to load
		}
		if target.Size > l.opts.MaxFileSize {
			perFile = append(perFile, &fileResult{issues: []Issue{tooLarge(p, target.Size, l.opts.MaxFileSize)}})
			continue
		}
		key := ""
		if target.Hash != "" {
			key = p + "\x00" + real + "\x00" + target.Hash
			if r, ok := l.files[key]; ok {
				nextFiles[key] = r
				perFile = append(perFile, r)
				continue
			}
		}
		j := &job{path: p, real: real, file: target, key: key}
		jobs = append(jobs, j)
	}

	l.runJobs(t, jobs)
	for _, j := range jobs {
		perFile = append(perFile, j.result)
		if j.key != "" {
			nextFiles[j.key] = j.result
		}
	}
	l.files = nextFiles

	nextKusts := make(map[string]*kustResult, len(roots))
	for _, r := range roots {
		kr := l.kusts[r]
		if kr == nil || !kr.valid(t) {
			kr = buildKustomization(t, r, l.opts)
		}
		nextKusts[r] = kr
		perFile = append(perFile, kr.result)
	}
	l.kusts = nextKusts

	out := l.assemble(perFile)
	out.Decoded = len(jobs)
	return out
}

func tooLarge(file string, size, limit int64) Issue {
	return Issue{Severity: SeverityError, File: file,
		Message: fmt.Sprintf("file is too large: %d bytes, the limit is %d bytes", size, limit)}
}

// runJobs decodes the files of jobs, in parallel.
func (l *Loader) runJobs(t *tree, jobs []*job) {
	workers := runtime.GOMAXPROCS(0)
	if workers > len(jobs) {
		workers = len(jobs)
	}
	if workers <= 1 {
		for _, j := range jobs {
			j.result = l.decodeJob(t, j)
		}
		return
	}
	var wg sync.WaitGroup
	next := make(chan *job)
	for range workers {
		wg.Go(func() {
			for j := range next {
				j.result = l.decodeJob(t, j)
			}
		})
	}
	for _, j := range jobs {
		next <- j
	}
	close(next)
	wg.Wait()
}

func (l *Loader) decodeJob(t *tree, j *job) (r *fileResult) {
	defer func() {
		if p := recover(); p != nil {
			r = &fileResult{issues: []Issue{{Severity: SeverityError, File: j.path, Message: fmt.Sprintf("internal error decoding this file: %v", p)}}}
		}
	}()
	data, err := t.read(j.real)
	if err != nil {
		return &fileResult{issues: []Issue{{Severity: SeverityError, File: j.path, Message: err.Error()}}}
	}
	if int64(len(data)) > l.opts.MaxFileSize {
		return &fileResult{issues: []Issue{tooLarge(j.path, int64(len(data)), l.opts.MaxFileSize)}}
	}
	return decodeFile(j.path, data)
}

// assemble joins the per-file results and runs the cross-file checks.
func (l *Loader) assemble(perFile []*fileResult) *Result {
	res := &Result{}
	var all []decoded
	for _, fr := range perFile {
		for _, is := range fr.issues {
			if is.Severity == SeverityWarning {
				res.Warnings = append(res.Warnings, is)
			} else {
				res.Errors = append(res.Errors, is)
			}
		}
		all = append(all, fr.objects...)
	}
	sort.SliceStable(all, func(i, j int) bool {
		a, b := all[i].obj, all[j].obj
		if a.File != b.File {
			return a.File < b.File
		}
		return a.Line < b.Line
	})

	// Duplicates: the first declaration (by file and line) wins the
	// report's place; every later one is an error naming it.
	first := make(map[string]decoded, len(all))
	namespaces := map[string]bool{"default": true, "kube-system": true}
	for _, d := range all {
		if d.obj.Kind == "Namespace" {
			namespaces[d.obj.Name] = true
		}
	}
	objs := make([]*Object, 0, len(all))
	for _, d := range all {
		o := d.obj
		k := o.Key()
		if prev, dup := first[k]; dup {
			res.Errors = append(res.Errors, Issue{Severity: SeverityError, File: o.File, Line: locLine(d.loc, "metadata.name", o.Line),
				Object: k, Field: "metadata.name",
				Message: fmt.Sprintf("duplicate object: %s is also declared at %s:%d", k, prev.obj.File, prev.obj.Line)})
			continue
		}
		first[k] = d
		objs = append(objs, o)
		if o.Namespace != "" && !namespaces[o.Namespace] {
			res.Errors = append(res.Errors, Issue{Severity: SeverityError, File: o.File, Line: locLine(d.loc, "metadata.namespace", o.Line),
				Object: k, Field: "metadata.namespace",
				Message: fmt.Sprintf("namespace %q is not declared: add a Namespace object named %q to the revision", o.Namespace, o.Namespace)})
		}
	}
	if len(objs) > l.opts.MaxObjects {
		o := objs[l.opts.MaxObjects]
		res.Errors = append(res.Errors, Issue{Severity: SeverityError, File: o.File, Line: o.Line, Object: o.Key(),
			Message: fmt.Sprintf("too many objects: the revision has %d, the limit is %d", len(objs), l.opts.MaxObjects)})
	}
	// Sort by Key, computing each key once: this runs on every revision.
	keyed := make([]keyedObject, len(objs))
	for i, o := range objs {
		keyed[i] = keyedObject{o.Key(), o}
	}
	slices.SortFunc(keyed, func(a, b keyedObject) int { return strings.Compare(a.key, b.key) })
	for i := range keyed {
		objs[i] = keyed[i].obj
	}
	res.Objects = objs
	sortIssues(res.Errors)
	sortIssues(res.Warnings)
	return res
}

type keyedObject struct {
	key string
	obj *Object
}

func sortIssues(is []Issue) {
	sort.SliceStable(is, func(i, j int) bool {
		if is[i].File != is[j].File {
			return is[i].File < is[j].File
		}
		return is[i].Line < is[j].Line
	})
}
