package gitsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/keelson/keelson/manifest"
)

// walkBudget is how many commits a walk reads per hold of the Repo's lock:
// a long history never holds up a Sync or a Read for more than a moment.
const walkBudget = 256

// pathWalk walks the commits reachable from a start commit that changed any
// of a set of paths, newest first by commit time, with Log's rule: a commit
// is listed when the paths differ from each of its parents (a root commit:
// when any path exists). It reads the clone under the Repo's lock, a
// bounded number of commits at a time. Should a Sync replace the open clone
// meanwhile, the walk starts again on the new one from the same commit and
// skips what it already returned: the history of a commit never changes.
//
// A pathWalk is used by one goroutine.
type pathWalk struct {
	r     *Repo
	start plumbing.Hash
	full  []string // the paths from the repository root ("" for the root)
	rel   []string // the same paths under the sub-path ("" for all of it)
	files bool     // list the files under the paths at each commit and its first parent

	repo    *git.Repository // the clone the iterator reads
	iter    object.CommitIter
	memo    map[plumbing.Hash]string
	skip    int // listed commits to skip after a restart
	emitted int
	done    bool
}

// pathCommit is one commit of a walk.
type pathCommit struct {
	Commit Commit
	// Root is true for a commit without parents.
	Root bool
	// Files are the files under the walked paths at the commit, and
	// ParentFiles those at its first parent (nil for a root commit), named
	// relative to the sub-path, with lazy Read functions. Only set when
	// the walk lists files.
	Files, ParentFiles []manifest.File
}

// walkPaths starts a walk from start (a full SHA; "" is the synced commit)
// over paths relative to the sub-path ("" is the whole sub-path).
func (r *Repo) walkPaths(start string, paths []string, files bool) (*pathWalk, error) {
	w := &pathWalk{r: r, files: files}
	for _, p := range paths {
		sub, err := cleanSubPath(p)
		if err != nil {
			return nil, err
		}
		w.rel = append(w.rel, sub)
		w.full = append(w.full, path.Join(r.subPath, sub))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case start != "":
		w.start = plumbing.NewHash(start)
	case r.last != nil:
		w.start = plumbing.NewHash(r.last.Commit.SHA)
	default:
		if r.git == nil {
			return nil, fmt.Errorf("cache %s unavailable", r.dir)
		}
		head, err := r.git.Storer.Reference(plumbing.HEAD)
		if err != nil || head.Type() != plumbing.HashReference {
			return nil, errors.New("not synced yet")
		}
		w.start = head.Hash()
	}
	if err := w.restart(); err != nil {
		return nil, err
	}
	return w, nil
}

// restart (re)opens the iterator on the Repo's current clone. r.mu is held.
func (w *pathWalk) restart() error {
	if w.r.git == nil {
		return fmt.Errorf("cache %s unavailable", w.r.dir)
	}
	c, err := w.r.git.CommitObject(w.start)
	if err != nil {
		return fmt.Errorf("commit %s: %w", w.start, err)
	}
	if w.iter != nil {
		w.iter.Close()
	}
	w.repo = w.r.git
	w.iter = object.NewCommitIterCTime(c, nil, nil)
	w.memo = make(map[plumbing.Hash]string)
	w.skip, w.emitted = w.emitted, 0
	return nil
}

// close releases the iterator.
func (w *pathWalk) close() {
	if w.iter != nil {
		w.iter.Close()
	}
}

// next returns the next listed commits, at most max of them; it may return
// fewer, even none, before the end of the walk, which sets w.done.
func (w *pathWalk) next(ctx context.Context, max int) ([]pathCommit, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	if w.r.git != w.repo {
		if err := w.restart(); err != nil {
			return nil, err
		}
	}
	var out []pathCommit
	for range walkBudget {
		if len(out) >= max || w.done {
			break
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := w.iter.Next()
		if err == io.EOF {
			w.done = true
			break
		}
		if err != nil {
			return nil, err
		}
		key, err := w.entry(c)
		if err != nil {
			return nil, err
		}
		include := key != ""
		var first *object.Commit
		for i, ph := range c.ParentHashes {
			pc, err := w.repo.CommitObject(ph)
			if err != nil {
				return nil, fmt.Errorf("commit %s: parent %s: %w", c.Hash, ph, err)
			}
			if i == 0 {
				first = pc
			}
			pk, err := w.entry(pc)
			if err != nil {
				return nil, err
			}
			include = pk != key
			if !include {
				break
			}
		}
		if !include {
			continue
		}
		w.emitted++
		if w.skip > 0 {
			w.skip--
			continue
		}
		pc := pathCommit{Commit: toCommit(c), Root: len(c.ParentHashes) == 0}
		if w.files {
			if pc.Files, err = w.filesAt(c); err != nil {
				return nil, err
			}
			if first != nil {
				if pc.ParentFiles, err = w.filesAt(first); err != nil {
					return nil, err
				}
				if pc.ParentFiles == nil {
					pc.ParentFiles = []manifest.File{}
				}
			}
		}
		out = append(out, pc)
	}
	return out, nil
}

// entry fingerprints what c holds at the walked paths: "" when none exists.
func (w *pathWalk) entry(c *object.Commit) (string, error) {
	if k, ok := w.memo[c.Hash]; ok {
		return k, nil
	}
	var (
		b    strings.Builder
		tree *object.Tree
	)
	found := false
	for _, full := range w.full {
		h := c.TreeHash
		if full != "" {
			if tree == nil {
				var err error
				if tree, err = w.repo.TreeObject(c.TreeHash); err != nil {
					return "", fmt.Errorf("commit %s: tree: %w", c.Hash, err)
				}
			}
			e, err := tree.FindEntry(full)
			switch {
			case errors.Is(err, object.ErrEntryNotFound), errors.Is(err, object.ErrDirectoryNotFound):
				h = plumbing.ZeroHash
			case err != nil:
				return "", fmt.Errorf("commit %s: %s: %w", c.Hash, full, err)
			default:
				h = e.Hash
			}
		}
		if !h.IsZero() {
			found = true
		}
		b.WriteString(h.String())
	}
	k := ""
	if found {
		k = b.String()
	}
	w.memo[c.Hash] = k
	return k, nil
}

// filesAt lists the files under the walked paths at c. r.mu is held.
func (w *pathWalk) filesAt(c *object.Commit) ([]manifest.File, error) {
	root, err := w.repo.TreeObject(c.TreeHash)
	if err != nil {
		return nil, fmt.Errorf("commit %s: tree: %w", c.Hash, err)
	}
	var files []manifest.File
	seen := map[string]bool{}
	add := func(f manifest.File) {
		if !seen[f.Path] {
			seen[f.Path] = true
			files = append(files, f)
		}
	}
	for i, full := range w.full {
		rel := w.rel[i]
		tree := root
		if full != "" {
			e, err := root.FindEntry(full)
			switch {
			case errors.Is(err, object.ErrEntryNotFound), errors.Is(err, object.ErrDirectoryNotFound):
				continue
			case err != nil:
				return nil, fmt.Errorf("commit %s: %s: %w", c.Hash, full, err)
			}
			if e.Mode != filemode.Dir {
				if e.Mode == filemode.Submodule {
					continue
				}
				f, err := w.r.fileOf(w.repo, rel, *e)
				if err != nil {
					return nil, fmt.Errorf("commit %s: %w", c.Hash, err)
				}
				add(f)
				continue
			}
			if tree, err = w.repo.TreeObject(e.Hash); err != nil {
				return nil, fmt.Errorf("commit %s: %s: %w", c.Hash, full, err)
			}
		}
		err := walkTree(tree, func(name string, e object.TreeEntry) error {
			f, err := w.r.fileOf(w.repo, path.Join(rel, name), e)
			if err != nil {
				return err
			}
			add(f)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", c.Hash, err)
		}
	}
	return files, nil
}

// walkTree calls fn for each file (not directory nor submodule) under tree.
func walkTree(tree *object.Tree, fn func(name string, e object.TreeEntry) error) error {
	tw := object.NewTreeWalker(tree, true, nil)
	defer tw.Close()
	for {
		name, e, err := tw.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("walk tree: %w", err)
		}
		if e.Mode == filemode.Dir || e.Mode == filemode.Submodule {
			continue
		}
		if err := fn(name, e); err != nil {
			return err
		}
	}
}

// fileOf is the manifest.File of the tree entry e named name, with a lazy
// reader. r.mu is held.
func (r *Repo) fileOf(repo *git.Repository, name string, e object.TreeEntry) (manifest.File, error) {
	size, err := r.blobSize(e.Hash)
	if err != nil {
		return manifest.File{}, fmt.Errorf("%s: %w", name, err)
	}
	f := manifest.File{Path: name, Hash: e.Hash.String(), Size: size, Read: r.reader(name, e.Hash)}
	if e.Mode == filemode.Symlink {
		target, err := readBlob(repo, e.Hash)
		if err != nil {
			return manifest.File{}, fmt.Errorf("symlink %s: %w", name, err)
		}
		f.Mode = fs.ModeSymlink
		f.Target = string(target)
	}
	return f, nil
}
