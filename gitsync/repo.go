package gitsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/keelson/keelson/manifest"
)

// maxUpdateFailures: see Repo.updateFailures.
const maxUpdateFailures = 3

// Timeouts of one network operation; the caller's ctx may end them sooner.
const (
	listTimeout  = 30 * time.Second
	fetchTimeout = 10 * time.Minute
)

// Repo is a Git source and its bare clone in a cache directory, which it
// owns. All methods are safe for concurrent use: Sync calls are serialized,
// and every access to the clone (including the Read functions of the files of
// a Revision) holds one lock, so a Read may wait for a fetch in progress.
type Repo struct {
	src     Source
	subPath string // cleaned Source.Path, "" for the root
	url     string // what go-git connects to: no password, local paths absolute
	dir     string
	log     *slog.Logger

	syncMu     sync.Mutex             // serializes Sync; guards defaultRef
	defaultRef plumbing.ReferenceName // the remote's default branch, when last listed

	mu         sync.Mutex // guards the clone on disk and the fields below
	git        *git.Repository
	last       *Revision
	lastRemote plumbing.Hash // what the remote ref pointed at when last synced
	suspect    bool          // a Read failed: verify the clone at the next Sync
	// updateFailures counts fetches or revision builds in a row that failed
	// after the remote answered; at maxUpdateFailures the clone is replaced
	// even when no damage is found.
	updateFailures int
	sizes          map[plumbing.Hash]int64
	// local is set for a repository opened in place by OpenLocal: it is
	// read, never fetched into.
	local bool
}

// Open returns the source with its clone in cacheDir, reusing a clone left
// there by an earlier run. A cache that is unusable (broken HEAD or config,
// missing or corrupt objects, another remote, garbage) is logged, removed
// and replaced by an empty clone that the next Sync fills. Open does not
// touch the network.
func Open(src Source, cacheDir string, log *slog.Logger) (*Repo, error) {
	if err := src.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	sub, _ := cleanSubPath(src.Path) // checked by Validate
	u, err := src.endpoint()
	if err != nil {
		return nil, fmt.Errorf("git source %s: %w", src, err)
	}
	r := &Repo{
		src:     src,
		subPath: sub,
		url:     u,
		dir:     cacheDir,
		log:     log,
		sizes:   make(map[plumbing.Hash]int64),
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.openCache(); err != nil {
		r.log.Warn("git cache unusable; removing it and cloning again",
			"source", src.String(), "dir", cacheDir, "err", err)
		if err := r.initCache(); err != nil {
			return nil, fmt.Errorf("git source %s: cache %s: %w", src, cacheDir, err)
		}
	}
	return r, nil
}

// Source returns the source the repository was opened with.
func (r *Repo) Source() Source { return r.src }

// Last returns the revision of the last successful Sync, or nil.
func (r *Repo) Last() *Revision {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

func (r *Repo) openCache() error {
	entries, err := os.ReadDir(r.dir)
	if errors.Is(err, fs.ErrNotExist) || err == nil && len(entries) == 0 {
		return r.initCache()
	}
	if err != nil {
		return err
	}
	repo, err := openBare(r.dir)
	if err != nil {
		return err
	}
	if err := r.verifyCache(repo); err != nil {
		closeRepo(repo)
		return err
	}
	r.setGit(repo)
	return nil
}

// objectCacheSize bounds go-git's cache of decoded objects. Blobs are read
// once per new revision (the manifest loader caches what it decodes), so a
// small cache is enough and keeps the controller's memory low.
const objectCacheSize = 4 * cache.MiByte

// openBare opens the clone keeping its pack files open, so that reading the
// thousands of blobs of a revision does not open a pack file for each one.
// Such a repository must be released with closeRepo.
func openBare(dir string) (*git.Repository, error) {
	fsys := osfs.New(dir, osfs.WithBoundOS())
	if _, err := fsys.Stat("config"); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, git.ErrRepositoryNotExists)
	}
	st := filesystem.NewStorageWithOptions(fsys, cache.NewObjectLRU(objectCacheSize), filesystem.Options{KeepDescriptors: true})
	repo, err := git.Open(st, nil)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return repo, nil
}

// closeRepo releases the pack files a repository from openBare holds.
func closeRepo(repo *git.Repository) {
	if repo == nil {
		return
	}
	if c, ok := repo.Storer.(io.Closer); ok {
		_ = c.Close()
	}
}

// setGit replaces the open clone, releasing the one it replaces. r.mu is held.
func (r *Repo) setGit(repo *git.Repository) {
	if r.git != nil && r.git != repo {
		closeRepo(r.git)
	}
	r.git = repo
}

// ensureCache recreates the clone when an earlier attempt to do so failed.
func (r *Repo) ensureCache() error {
	if r.git != nil {
		return nil
	}
	if err := r.initCache(); err != nil {
		return fmt.Errorf("recreate cache %s: %w", r.dir, err)
	}
	return nil
}

// reopen opens the clone afresh before it is updated, so that go-git's
// in-memory pack indexes and object cache cannot hide damage done to the
// files since (the update then fails and the clone is repaired). After a
// failed Read it also verifies the clone, and replaces it when damaged.
func (r *Repo) reopen() error {
	repo, err := openBare(r.dir)
	if err == nil && r.suspect {
		if err = r.verifyCache(repo); err != nil {
			closeRepo(repo)
		}
	}
	if err != nil {
		r.log.Warn("git cache corrupt; removing it and cloning again",
			"source", r.src.String(), "dir", r.dir, "err", err)
		return r.ensureCache()
	}
	r.setGit(repo)
	return nil
}

// initCache replaces whatever is in the cache directory by an empty bare
// repository whose origin is the source.
func (r *Repo) initCache() error {
	r.setGit(nil)
	r.updateFailures = 0
	clear(r.sizes)
	if err := os.RemoveAll(r.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		return err
	}
	repo, err := git.PlainInit(r.dir, true)
	if err != nil {
		return err
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{r.url}}); err != nil {
		return err
	}
	r.setGit(repo)
	return nil
}

// verifyCache checks that repo is a clone of this source whose refs all
// point at complete commits (trees and blobs under the sub-path present).
func (r *Repo) verifyCache(repo *git.Repository) error {
	cfg, err := repo.Config()
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	rc, ok := cfg.Remotes["origin"]
	if !ok || len(rc.URLs) != 1 || rc.URLs[0] != r.url {
		return errors.New("the cache is a clone of another remote")
	}
	head, err := repo.Storer.Reference(plumbing.HEAD)
	if err != nil {
		return fmt.Errorf("HEAD: %w", err)
	}
	refs := []*plumbing.Reference{head}
	iter, err := repo.Storer.IterReferences()
	if err != nil {
		return fmt.Errorf("refs: %w", err)
	}
	if err := iter.ForEach(func(ref *plumbing.Reference) error {
		refs = append(refs, ref)
		return nil
	}); err != nil {
		return fmt.Errorf("refs: %w", err)
	}
	followed := plumbing.ReferenceName(r.src.refName())
	for _, ref := range refs {
		if ref.Type() != plumbing.HashReference {
			continue
		}
		c, err := peelCommit(repo, ref.Hash())
		if err != nil {
			return fmt.Errorf("%s: %w", ref.Name(), err)
		}
		// Walking the tree of every tag would make opening a clone with
		// many releases slow: check the synced commit (HEAD) and the ref
		// followed, the ones a revision is built from.
		if ref.Name() != plumbing.HEAD && ref.Name() != followed {
			continue
		}
		if err := r.checkTree(repo, c); err != nil {
			return fmt.Errorf("%s: commit %s: %w", ref.Name(), c.Hash, err)
		}
	}
	return nil
}

// checkTree checks that the objects under the sub-path of c are present.
func (r *Repo) checkTree(repo *git.Repository, c *object.Commit) error {
	tree, err := c.Tree()
	if err != nil {
		return err
	}
	if r.subPath != "" {
		if tree, err = tree.Tree(r.subPath); err != nil {
			return nil // not on this commit: nothing to check
		}
	}
	w := object.NewTreeWalker(tree, true, nil)
	defer w.Close()
	for {
		_, e, err := w.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if e.Mode == filemode.Dir || e.Mode == filemode.Submodule {
			continue
		}
		if err := repo.Storer.HasEncodedObject(e.Hash); err != nil {
			return fmt.Errorf("blob %s: %w", e.Hash, err)
		}
	}
}

// Sync brings the clone up to date with the followed ref and returns its
// revision. When the remote ref has not moved since the last Sync (a ref
// listing tells, as git ls-remote does) nothing is fetched and the last
// revision is returned with changed false. Force-pushes are followed. On
// error (server down, authentication refused, ref deleted) nothing changes:
// Last still returns the last good revision and a later Sync recovers.
func (r *Repo) Sync(ctx context.Context) (rev *Revision, changed bool, err error) {
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	if r.local {
		return nil, false, fmt.Errorf("git source %s: opened in place for reading; it cannot be synced", r.src)
	}
	if r.src.Commit != "" {
		return r.syncPinned(ctx)
	}
	ref, remote, err := r.lsRemote(ctx)
	if err != nil {
		return nil, false, err
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last != nil && r.last.Ref == ref.String() && remote == r.lastRemote && !r.suspect {
		return r.last, false, nil
	}
	if err := r.reopen(); err != nil {
		return nil, false, fmt.Errorf("git source %s: %s: %w", r.src, ref, err)
	}
	rev, err = r.update(ctx, ref, remote)
	if err != nil && ctx.Err() == nil {
		repo, verr := openBare(r.dir)
		if verr == nil {
			verr = r.verifyCache(repo)
			closeRepo(repo)
		}
		if verr == nil && r.updateFailures >= maxUpdateFailures {
			verr = fmt.Errorf("%d updates in a row failed although the remote answered", r.updateFailures)
		}
		if verr != nil {
			// The server answered the listing; the clone is what failed.
			r.log.Warn("git cache corrupt; removing it and cloning again",
				"source", r.src.String(), "ref", ref.String(), "dir", r.dir, "err", verr, "cause", err)
			if ierr := r.initCache(); ierr != nil {
				return nil, false, fmt.Errorf("git source %s: %s: recreate cache %s: %w", r.src, ref, r.dir, ierr)
			}
			rev, err = r.update(ctx, ref, remote)
		}
	}
	if err != nil {
		r.updateFailures++
		return nil, false, fmt.Errorf("git source %s: %s: %w", r.src, ref, err)
	}
	r.updateFailures = 0
	r.lastRemote = remote
	if r.suspect {
		// A Read failed on the last revision; this one was built from a
		// verified (or new) clone, so hand it out again.
		r.suspect = false
		r.last = rev
		return rev, true, nil
	}
	if r.last != nil && r.last.Ref == rev.Ref && r.last.Commit.SHA == rev.Commit.SHA {
		return r.last, false, nil
	}
	r.last = rev
	return rev, true, nil
}

// lsRemote lists the remote's refs and returns the followed one. It does not
// touch the clone.
func (r *Repo) lsRemote(ctx context.Context) (plumbing.ReferenceName, plumbing.Hash, error) {
	want := plumbing.ReferenceName(r.src.refName())
	what := want.String()
	if want == "" {
		what = "default branch"
		if r.defaultRef != "" {
			what += " " + r.defaultRef.String()
		}
	}
	fail := func(format string, args ...any) (plumbing.ReferenceName, plumbing.Hash, error) {
		return "", plumbing.ZeroHash, fmt.Errorf("git source %s: %s: "+format, append([]any{r.src, what}, args...)...)
	}
	auth, err := r.src.authMethod()
	if err != nil {
		return fail("auth: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.url}})
	refs, err := rem.ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return fail("list remote refs: %w", err)
	}
	var head *plumbing.Reference
	byName := make(map[plumbing.ReferenceName]plumbing.Hash, len(refs))
	for _, ref := range refs {
		if ref.Name() == plumbing.HEAD {
			head = ref
		}
		if ref.Type() == plumbing.HashReference {
			byName[ref.Name()] = ref.Hash()
		}
	}
	name := want
	if name == "" {
		name = defaultBranch(head, byName)
		r.defaultRef = name
		what = "default branch " + name.String()
	}
	h, ok := byName[name]
	if !ok {
		return fail("not found on the remote (deleted, or never pushed?)")
	}
	return name, h, nil
}

// defaultBranch is what the remote's HEAD names, or else the branch its
// HEAD points at the commit of, or else refs/heads/main.
func defaultBranch(head *plumbing.Reference, refs map[plumbing.ReferenceName]plumbing.Hash) plumbing.ReferenceName {
	if head == nil {
		return plumbing.NewBranchReferenceName("main")
	}
	if head.Type() == plumbing.SymbolicReference {
		return head.Target()
	}
	for _, b := range []string{"main", "master"} {
		n := plumbing.NewBranchReferenceName(b)
		if refs[n] == head.Hash() {
			return n
		}
	}
	var names []string
	for n, h := range refs {
		if n.IsBranch() && h == head.Hash() {
			names = append(names, n.String())
		}
	}
	if len(names) > 0 {
		sort.Strings(names)
		return plumbing.ReferenceName(names[0])
	}
	return plumbing.NewBranchReferenceName("main")
}

// update makes the local ref equal to remote, fetching only when the object
// is not in the clone already, and builds the revision. r.mu is held.
func (r *Repo) update(ctx context.Context, ref plumbing.ReferenceName, remote plumbing.Hash) (*Revision, error) {
	if _, err := peelCommit(r.git, remote); err != nil {
		spec := config.RefSpec(fmt.Sprintf("+%s:%s", ref, ref))
		if err := r.fetch(ctx, spec); err != nil {
			return nil, err
		}
	}
	c, err := peelCommit(r.git, remote)
	if err != nil {
		return nil, fmt.Errorf("after fetch: %s: %w", remote, err)
	}
	if err := r.git.Storer.SetReference(plumbing.NewHashReference(ref, remote)); err != nil {
		return nil, fmt.Errorf("update local ref: %w", err)
	}
	rev, err := r.revision(c, ref.String())
	if err != nil {
		return nil, err
	}
	// HEAD of the clone is the synced commit, so that Resolve("HEAD~1") and
	// Log follow it.
	if err := r.git.Storer.SetReference(plumbing.NewHashReference(plumbing.HEAD, c.Hash)); err != nil {
		return nil, fmt.Errorf("update HEAD: %w", err)
	}
	return rev, nil
}

func (r *Repo) fetch(ctx context.Context, specs ...config.RefSpec) error {
	auth, err := r.src.authMethod()
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	err = r.git.FetchContext(ctx, &git.FetchOptions{
		RemoteName: "origin",
		RefSpecs:   specs,
		Auth:       auth,
		Force:      true,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("fetch: %w", err)
	}
	r.maybeRepack()
	return nil
}

// maxPacks is how many packs (one per fetch) the clone may hold before they
// are merged into one, to keep object lookups fast.
const maxPacks = 32

func (r *Repo) maybeRepack() {
	pos, ok := r.git.Storer.(storer.PackedObjectStorer)
	if !ok {
		return
	}
	packs, err := pos.ObjectPacks()
	if err != nil || len(packs) <= maxPacks {
		return
	}
	start := time.Now()
	if err := r.git.RepackObjects(&git.RepackConfig{}); err != nil {
		r.log.Warn("git cache repack failed", "source", r.src.String(), "dir", r.dir, "packs", len(packs), "err", err)
		return
	}
	r.log.Debug("git cache repacked", "source", r.src.String(), "packs", len(packs), "took", time.Since(start))
}

// syncPinned syncs a source pinned to one commit: fetched once, never
// changed afterwards.
func (r *Repo) syncPinned(ctx context.Context) (*Revision, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last != nil && !r.suspect {
		return r.last, false, nil
	}
	h := plumbing.NewHash(r.src.Commit)
	fail := func(err error) (*Revision, bool, error) {
		return nil, false, fmt.Errorf("git source %s: commit %s: %w", r.src, r.src.Commit, err)
	}
	if err := r.reopen(); err != nil {
		return fail(err)
	}
	if _, err := peelCommit(r.git, h); err != nil {
		if err := r.fetch(ctx, "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"); err != nil {
			return fail(err)
		}
	}
	c, err := peelCommit(r.git, h)
	if err != nil {
		return fail(fmt.Errorf("not found on any branch or tag of the remote: %w", err))
	}
	rev, err := r.revision(c, c.Hash.String())
	if err != nil {
		return fail(err)
	}
	if err := r.git.Storer.SetReference(plumbing.NewHashReference(plumbing.HEAD, c.Hash)); err != nil {
		return fail(fmt.Errorf("update HEAD: %w", err))
	}
	r.last, r.suspect = rev, false
	return rev, true, nil
}

// Resolve returns the revision of any commit-ish the clone knows: a full or
// short SHA, a branch or tag name, "HEAD" (the last synced commit), "HEAD~1".
func (r *Repo) Resolve(ctx context.Context, rev string) (*Revision, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.git == nil {
		return nil, fmt.Errorf("git source %s: resolve %q: cache %s unavailable", r.src, rev, r.dir)
	}
	h, err := r.git.ResolveRevision(plumbing.Revision(rev))
	if err != nil {
		return nil, fmt.Errorf("git source %s: resolve %q: %w", r.src, rev, err)
	}
	c, err := peelCommit(r.git, *h)
	if err != nil {
		return nil, fmt.Errorf("git source %s: resolve %q: %w", r.src, rev, err)
	}
	out, err := r.revision(c, rev)
	if err != nil {
		return nil, fmt.Errorf("git source %s: %q: %w", r.src, rev, err)
	}
	return out, nil
}

// Log returns the commits reachable from the synced commit that changed p
// (relative to the sub-path; "" is the whole sub-path), newest first, at
// most limit of them (all when limit <= 0). A merge is listed only when it
// differs from each of its parents at p.
func (r *Repo) Log(ctx context.Context, p string, limit int) ([]Commit, error) {
	return r.LogPaths(ctx, []string{p}, limit)
}

// LogPaths is Log over several paths: the commits that changed any of them.
// The walk holds the clone's lock a few hundred commits at a time, so a long
// history does not hold up a Sync.
func (r *Repo) LogPaths(ctx context.Context, paths []string, limit int) ([]Commit, error) {
	fail := func(err error) ([]Commit, error) {
		var full []string
		for _, p := range paths {
			full = append(full, path.Join(r.subPath, p))
		}
		return nil, fmt.Errorf("git source %s: log %q: %w", r.src, strings.Join(full, ", "), err)
	}
	w, err := r.walkPaths("", paths, false)
	if err != nil {
		return fail(err)
	}
	defer w.close()
	var out []Commit
	for !w.done && (limit <= 0 || len(out) < limit) {
		n := walkBudget
		if limit > 0 {
			n = limit - len(out)
		}
		batch, err := w.next(ctx, n)
		if err != nil {
			return fail(err)
		}
		for _, pc := range batch {
			out = append(out, pc.Commit)
		}
	}
	return out, nil
}

// revision lists the files of c under the sub-path. r.mu is held.
func (r *Repo) revision(c *object.Commit, ref string) (*Revision, error) {
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("commit %s: tree: %w", c.Hash, err)
	}
	if r.subPath != "" {
		tree, err = tree.Tree(r.subPath)
		if err != nil {
			return nil, fmt.Errorf("commit %s: path %q: %w", c.Hash, r.subPath, err)
		}
	}
	var files []manifest.File
	err = walkTree(tree, func(name string, e object.TreeEntry) error {
		f, err := r.fileOf(r.git, name, e)
		if err != nil {
			return err
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", c.Hash, err)
	}
	sort.Slice(files, func(i, j int) bool { return files[i].Path < files[j].Path })
	return &Revision{Commit: toCommit(c), Ref: ref, Files: files}, nil
}

// maxSizeCache bounds the blob size cache; it is cleared when full.
const maxSizeCache = 200_000

func (r *Repo) blobSize(h plumbing.Hash) (int64, error) {
	// A blob's size never changes. The cache makes a commit that changes
	// one file of thousands cheap (looking an object up costs syscalls);
	// should the blob have been lost since, Read fails and the next Sync
	// verifies and repairs the clone.
	if s, ok := r.sizes[h]; ok {
		return s, nil
	}
	var size int64
	if s, ok := r.git.Storer.(interface {
		EncodedObjectSize(plumbing.Hash) (int64, error)
	}); ok {
		n, err := s.EncodedObjectSize(h)
		if err != nil {
			return 0, err
		}
		size = n
	} else {
		b, err := r.git.BlobObject(h)
		if err != nil {
			return 0, err
		}
		size = b.Size
	}
	if len(r.sizes) >= maxSizeCache {
		clear(r.sizes)
	}
	r.sizes[h] = size
	return size, nil
}

func (r *Repo) reader(name string, h plumbing.Hash) func() ([]byte, error) {
	return func() ([]byte, error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.git == nil {
			return nil, fmt.Errorf("git source %s: read %s: cache unavailable", r.src, name)
		}
		b, err := readBlob(r.git, h)
		if err != nil {
			r.suspect = true // the next Sync verifies the clone
			return nil, fmt.Errorf("git source %s: read %s (blob %s): %w", r.src, name, h, err)
		}
		return b, nil
	}
}

func readBlob(repo *git.Repository, h plumbing.Hash) ([]byte, error) {
	b, err := repo.BlobObject(h)
	if err != nil {
		return nil, err
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

// peelCommit returns the commit h names, through annotated tags.
func peelCommit(repo *git.Repository, h plumbing.Hash) (*object.Commit, error) {
	for range 10 {
		obj, err := repo.Storer.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return nil, err
		}
		switch obj.Type() {
		case plumbing.CommitObject:
			return object.DecodeCommit(repo.Storer, obj)
		case plumbing.TagObject:
			t, err := object.DecodeTag(repo.Storer, obj)
			if err != nil {
				return nil, err
			}
			h = t.Target
		default:
			return nil, fmt.Errorf("%s is a %s, not a commit", h, obj.Type())
		}
	}
	return nil, fmt.Errorf("%s: too many nested tags", h)
}

func toCommit(c *object.Commit) Commit {
	return Commit{
		SHA:     c.Hash.String(),
		Author:  c.Author.Name,
		Email:   c.Author.Email,
		Message: strings.TrimRight(c.Message, "\n"),
		Time:    c.Author.When,
	}
}

// Close releases the clone's open files. The Repo must not be used after.
func (r *Repo) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.local {
		r.setGit(nil)
	}
	return nil
}
