package gitsync

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// OpenLocal opens, in place, the repository whose work tree holds dir, for
// reading its commits (`keelson diff`, history). The returned Repo reads
// Revisions with Resolve and Log at the sub-path of dir inside the work
// tree, which is also returned. It never fetches nor writes: Sync on it
// fails. root is the work tree's top directory.
func OpenLocal(dir string, log *slog.Logger) (r *Repo, root, subPath string, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", dir, err)
	}
	repo, err := git.PlainOpenWithOptions(abs, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		if errors.Is(err, git.ErrRepositoryNotExists) {
			return nil, "", "", fmt.Errorf("%s is not inside a Git repository", dir)
		}
		return nil, "", "", fmt.Errorf("%s: open repository: %w", dir, err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: a bare repository has no working tree to diff against: %w", dir, err)
	}
	root = wt.Filesystem.Root()
	rel, err := filepath.Rel(root, abs)
	if err != nil {
		return nil, "", "", fmt.Errorf("%s: %w", dir, err)
	}
	sub := filepath.ToSlash(rel)
	if sub == "." {
		sub = ""
	}
	src := Source{URL: root, Path: sub}
	return &Repo{src: src, subPath: sub, url: root, dir: root, log: log, git: repo, local: true, sizes: make(map[plumbing.Hash]int64)}, root, sub, nil
}
