package gitsync

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"sort"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"
)

// NotesRef is the notes ref Keelson reads and writes: `git log
// --notes=keelson` shows what became of each commit.
const NotesRef plumbing.ReferenceName = "refs/notes/keelson"

const (
	// notesTTL is how long Read serves a remote's notes before it asks
	// the remote again.
	notesTTL = time.Minute
	// notesAttempts bounds the tries of one Add against concurrent writers.
	notesAttempts = 5
	// notesFanout is the number of notes above which a notes tree is
	// split by the first two hex digits, as git does for large ones.
	notesFanout = 256
	// notesListTimeout bounds the remote calls of Read.
	notesListTimeout = 10 * time.Second
)

// Errors of a local notes ref update.
var (
	errNotesLocked = errors.New("notes ref is locked by another writer (a .lock file exists)")
	errNotesMoved  = errors.New("notes ref moved meanwhile")
)

// Notes reads and writes the notes of a source's commits in
// refs/notes/keelson, as git notes does: a notes commit whose tree maps
// each annotated commit's SHA (flat, or split by its first two hex digits
// when there are many) to a blob holding the note. Notes are keyed by SHA,
// so a commit that leaves the branch (force-push) keeps its note.
//
// For a local source (a path or file:// URL) notes are read from and written
// to that repository directly, taking the ref's lock file as git does. For a
// remote source they live in a small bare repository of their own (dir),
// which holds only the notes history: Add fetches the remote's notes ref,
// adds a notes commit on top of it and pushes it with the source's
// credentials, fetching and merging again when another writer pushed first.
// Existing notes are never dropped: a note someone else wrote on the same
// commit is kept, and Keelson's text follows it.
//
// Notes never touches a Repo's clone, so reading or writing notes never
// holds up a Sync. Notes is safe for concurrent use.
type Notes struct {
	src      Source
	url      string
	localDir string // the repository of a local source
	dir      string // the notes repository of a remote source
	log      *slog.Logger
	now      func() time.Time

	mu   sync.Mutex      // serializes Git access (reads, fetches, writes)
	repo *git.Repository // the notes repository of a remote source

	viewMu    sync.Mutex
	view      map[string]string // the notes at viewTip; replaced whole, never modified
	viewTip   plumbing.Hash
	refreshed time.Time // when the remote's ref was last listed

	// beforePush, when set (tests), runs before each push.
	beforePush func()
}

// OpenNotes returns the notes of src. dir is where the notes of a remote
// source are kept (created when missing, replaced when unusable); it is not
// used for a local source. Nothing is read from the network.
func OpenNotes(src Source, dir string, log *slog.Logger) (*Notes, error) {
	if err := src.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	u, err := src.endpoint()
	if err != nil {
		return nil, fmt.Errorf("git source %s: %w", src, err)
	}
	n := &Notes{src: src, url: u, localDir: src.localDir(), dir: dir, log: log, now: time.Now}
	if n.localDir != "" {
		return n, nil
	}
	repo, err := git.PlainOpen(dir)
	if err == nil {
		if cfg, cerr := repo.Config(); cerr != nil || len(cfg.Remotes["origin"].URLs) != 1 || cfg.Remotes["origin"].URLs[0] != u {
			err = fmt.Errorf("not a notes repository of %s", src)
		}
	}
	if err != nil {
		if !errors.Is(err, git.ErrRepositoryNotExists) {
			log.Warn("git notes repository unusable; starting a new one", "dir", dir, "err", err)
		}
		if repo, err = initNotesRepo(dir, u); err != nil {
			return nil, fmt.Errorf("git source %s: notes repository %s: %w", src, dir, err)
		}
	}
	n.repo = repo
	return n, nil
}

func initNotesRepo(dir, url string) (*git.Repository, error) {
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	repo, err := git.PlainInit(dir, true)
	if err != nil {
		return nil, err
	}
	if _, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}}); err != nil {
		return nil, err
	}
	return repo, nil
}

// openLocal opens the local source's repository afresh, so that packs
// written by git since the last call are seen.
func (n *Notes) openLocal() (*git.Repository, error) {
	repo, err := git.PlainOpenWithOptions(n.localDir, &git.PlainOpenOptions{DetectDotGit: true, EnableDotGitCommonDir: true})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", n.localDir, err)
	}
	return repo, nil
}

// Read returns every note, commit SHA → text. The map is shared: do not
// modify it. A remote's notes are listed again when the last listing is
// older than a minute (the answer is cached otherwise); when the remote
// cannot be reached, or a write is under way, the notes known are returned.
func (n *Notes) Read(ctx context.Context) (map[string]string, error) {
	if n.localDir == "" {
		n.viewMu.Lock()
		fresh := n.view != nil && n.now().Sub(n.refreshed) < notesTTL
		view := n.view
		n.viewMu.Unlock()
		if fresh {
			return view, nil
		}
		if !n.mu.TryLock() {
			return view, nil // a write or refresh is under way; it refreshes the view
		}
		defer n.mu.Unlock()
		ctx, cancel := context.WithTimeout(ctx, notesListTimeout)
		defer cancel()
		if _, err := n.fetch(ctx); err != nil {
			n.log.Warn("could not read the remote's notes; using those known", "source", n.src.String(), "ref", NotesRef.String(), "err", err)
			n.viewMu.Lock()
			n.refreshed = n.now() // do not ask again at every read
			n.viewMu.Unlock()
		}
		return n.loadView(n.repo)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	repo, err := n.openLocal()
	if err != nil {
		return nil, fmt.Errorf("git source %s: notes: %w", n.src, err)
	}
	return n.loadView(repo)
}

// Refresh reads a remote's notes ref now, failing when the remote cannot
// be reached (Read, in that case, serves the notes known). It does nothing
// for a local source, whose notes Read always reads afresh.
func (n *Notes) Refresh(ctx context.Context) error {
	if n.localDir != "" {
		return nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, err := n.fetch(ctx); err != nil {
		return fmt.Errorf("git source %s: read notes %s: %w", n.src, NotesRef, err)
	}
	_, err := n.loadView(n.repo)
	return err
}

// loadView reads the notes at repo's notes ref, unless the view already
// holds them. n.mu is held.
func (n *Notes) loadView(repo *git.Repository) (map[string]string, error) {
	tip, err := refHash(repo, NotesRef)
	if err != nil {
		return nil, fmt.Errorf("git source %s: %s: %w", n.src, NotesRef, err)
	}
	n.viewMu.Lock()
	if n.view != nil && tip == n.viewTip {
		v := n.view
		n.viewMu.Unlock()
		return v, nil
	}
	n.viewMu.Unlock()
	view := map[string]string{}
	if !tip.IsZero() {
		entries, err := readNoteEntries(repo.Storer, tip)
		if err != nil {
			return nil, fmt.Errorf("git source %s: %s: %w", n.src, NotesRef, err)
		}
		for sha, blob := range entries {
			b, err := readBlob(repo, blob)
			if err != nil {
				return nil, fmt.Errorf("git source %s: %s: note of %s: %w", n.src, NotesRef, sha, err)
			}
			view[sha.String()] = string(b)
		}
	}
	n.viewMu.Lock()
	n.view, n.viewTip = view, tip
	n.viewMu.Unlock()
	return view, nil
}

// refHash is what ref points at, zero when it does not exist.
func refHash(repo *git.Repository, name plumbing.ReferenceName) (plumbing.Hash, error) {
	ref, err := repo.Storer.Reference(name)
	if errors.Is(err, plumbing.ErrReferenceNotFound) {
		return plumbing.ZeroHash, nil
	}
	if err != nil {
		return plumbing.ZeroHash, err
	}
	return ref.Hash(), nil
}

// Add writes notes (commit SHA → text) in one notes commit on top of the
// notes ref. A commit's existing note from Keelson is replaced; one written
// by someone else is kept, with Keelson's text after it. When another
// writer moves the ref meanwhile (a concurrent `git notes add`, a push to
// the remote) Add reads it again and merges, a few times.
func (n *Notes) Add(ctx context.Context, notes map[string]string) error {
	if len(notes) == 0 {
		return nil
	}
	for sha := range notes {
		if !fullSHA.MatchString(sha) {
			return fmt.Errorf("git source %s: note for %q: not a full commit SHA", n.src, sha)
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	var err error
	if n.localDir != "" {
		err = n.addLocal(ctx, notes)
	} else {
		err = n.addRemote(ctx, notes)
	}
	if err != nil {
		return fmt.Errorf("git source %s: write notes %s: %w", n.src, NotesRef, err)
	}
	return nil
}

func (n *Notes) addLocal(ctx context.Context, notes map[string]string) error {
	var last error
	for attempt := range notesAttempts {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Duration(attempt) * 50 * time.Millisecond):
			}
		}
		repo, err := n.openLocal()
		if err != nil {
			return err
		}
		old, err := refHash(repo, NotesRef)
		if err != nil {
			return err
		}
		next, changed, err := n.notesCommit(repo.Storer, old, notes)
		if err != nil || !changed {
			return err
		}
		err = updateRefLocked(repo, NotesRef, old, next)
		if errors.Is(err, errNotesLocked) || errors.Is(err, errNotesMoved) {
			last = err
			continue
		}
		if err != nil {
			return err
		}
		_, err = n.loadView(repo)
		return err
	}
	return fmt.Errorf("gave up after %d attempts: %w", notesAttempts, last)
}

func (n *Notes) addRemote(ctx context.Context, notes map[string]string) error {
	var last error
	for range notesAttempts {
		old, err := n.fetch(ctx)
		if err != nil {
			return err
		}
		next, changed, err := n.notesCommit(n.repo.Storer, old, notes)
		if err != nil || !changed {
			return err
		}
		if err := n.repo.Storer.SetReference(plumbing.NewHashReference(NotesRef, next)); err != nil {
			return err
		}
		if n.beforePush != nil {
			n.beforePush()
		}
		err = n.push(ctx)
		if err == nil {
			_, err = n.loadView(n.repo)
			return err
		}
		if !rejected(err) {
			return err
		}
		n.log.Debug("notes push rejected; fetching and merging again", "source", n.src.String(), "err", err)
		last = err
	}
	return fmt.Errorf("gave up after %d attempts: %w", notesAttempts, last)
}

// rejected reports whether a push failed because the remote ref moved.
func rejected(err error) bool {
	if errors.Is(err, git.ErrForceNeeded) {
		return true
	}
	msg := err.Error()
	for _, s := range []string{"non-fast-forward", "fetch first", "stale info", "rejected", "failed to update ref", "cannot lock ref"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// fetch makes the notes repository's ref equal to the remote's and returns
// it (zero when the remote has none). n.mu is held.
func (n *Notes) fetch(ctx context.Context) (plumbing.Hash, error) {
	auth, err := n.src.authMethod()
	if err != nil {
		return plumbing.ZeroHash, fmt.Errorf("auth: %w", err)
	}
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{n.url}})
	refs, err := rem.ListContext(lctx, &git.ListOptions{Auth: auth})
	if err != nil && !errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return plumbing.ZeroHash, fmt.Errorf("list remote refs: %w", err)
	}
	n.viewMu.Lock()
	n.refreshed = n.now()
	n.viewMu.Unlock()
	var remote plumbing.Hash
	for _, r := range refs {
		if r.Name() == NotesRef && r.Type() == plumbing.HashReference {
			remote = r.Hash()
		}
	}
	if remote.IsZero() {
		err := n.repo.Storer.RemoveReference(NotesRef)
		return plumbing.ZeroHash, err
	}
	if _, err := object.GetCommit(n.repo.Storer, remote); err != nil {
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
		err = n.repo.FetchContext(fctx, &git.FetchOptions{
			RemoteName: "origin",
			RefSpecs:   []config.RefSpec{config.RefSpec("+" + NotesRef + ":" + NotesRef)},
			Auth:       auth,
			Force:      true,
		})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return plumbing.ZeroHash, fmt.Errorf("fetch: %w", err)
		}
	}
	if err := n.repo.Storer.SetReference(plumbing.NewHashReference(NotesRef, remote)); err != nil {
		return plumbing.ZeroHash, err
	}
	return remote, nil
}

func (n *Notes) push(ctx context.Context) error {
	auth, err := n.src.authMethod()
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	err = n.repo.PushContext(ctx, &git.PushOptions{
		RemoteName: "origin",
		RefSpecs:   []config.RefSpec{config.RefSpec(NotesRef + ":" + NotesRef)},
		Auth:       auth,
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return fmt.Errorf("push: %w", err)
	}
	return nil
}

// notesCommit writes, in s, a notes commit on top of parent (zero: none)
// holding parent's notes and notes merged in. changed is false, and nothing
// is written, when every note is there already.
func (n *Notes) notesCommit(s storer.EncodedObjectStorer, parent plumbing.Hash, notes map[string]string) (plumbing.Hash, bool, error) {
	entries := map[plumbing.Hash]plumbing.Hash{}
	if !parent.IsZero() {
		var err error
		if entries, err = readNoteEntries(s, parent); err != nil {
			return plumbing.ZeroHash, false, err
		}
	}
	var changed []string
	shas := make([]string, 0, len(notes))
	for sha := range notes {
		shas = append(shas, sha)
	}
	sort.Strings(shas)
	for _, sha := range shas {
		h := plumbing.NewHash(sha)
		existing := ""
		if b, ok := entries[h]; ok {
			data, err := readBlobFrom(s, b)
			if err != nil {
				return plumbing.ZeroHash, false, fmt.Errorf("note of %s: %w", sha, err)
			}
			existing = string(data)
		}
		text := MergeNote(existing, notes[sha])
		if text == existing {
			continue
		}
		blob, err := writeBlob(s, []byte(text))
		if err != nil {
			return plumbing.ZeroHash, false, err
		}
		entries[h] = blob
		changed = append(changed, sha[:12])
	}
	if len(changed) == 0 {
		return parent, false, nil
	}
	tree, err := writeNotesTree(s, entries)
	if err != nil {
		return plumbing.ZeroHash, false, err
	}
	sig := object.Signature{Name: "keelson", Email: "keelson@localhost", When: n.now()}
	c := &object.Commit{
		Author:    sig,
		Committer: sig,
		Message:   "Notes added by keelson\n\n" + strings.Join(changed, "\n") + "\n",
		TreeHash:  tree,
	}
	if !parent.IsZero() {
		c.ParentHashes = []plumbing.Hash{parent}
	}
	obj := s.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, false, err
	}
	h, err := s.SetEncodedObject(obj)
	if err != nil {
		return plumbing.ZeroHash, false, err
	}
	return h, true, nil
}

// keelsonMarker starts the lines Keelson writes in a note.
const keelsonMarker = "keelson: "

// MergeNote is the note of a commit that had existing (maybe empty) once
// Keelson's text is added: Keelson's earlier text is replaced, anything
// else is kept before it.
func MergeNote(existing, keelson string) string {
	if !strings.HasSuffix(keelson, "\n") {
		keelson += "\n"
	}
	other := existing
	if i := keelsonStart(existing); i >= 0 {
		other = existing[:i]
	}
	other = strings.TrimRight(other, "\n")
	if other == "" {
		return keelson
	}
	return other + "\n\n" + keelson
}

// keelsonStart is the offset of Keelson's text in a note, or -1.
func keelsonStart(note string) int {
	if strings.HasPrefix(note, keelsonMarker) {
		return 0
	}
	if i := strings.Index(note, "\n"+keelsonMarker); i >= 0 {
		return i + 1
	}
	return -1
}

// readNoteEntries lists the notes of a notes commit: annotated commit →
// note blob, whatever the fanout of its tree.
func readNoteEntries(s storer.EncodedObjectStorer, commit plumbing.Hash) (map[plumbing.Hash]plumbing.Hash, error) {
	c, err := object.GetCommit(s, commit)
	if err != nil {
		return nil, fmt.Errorf("notes commit %s: %w", commit, err)
	}
	root, err := object.GetTree(s, c.TreeHash)
	if err != nil {
		return nil, fmt.Errorf("notes commit %s: tree: %w", commit, err)
	}
	out := map[plumbing.Hash]plumbing.Hash{}
	var walk func(t *object.Tree, prefix string, depth int) error
	walk = func(t *object.Tree, prefix string, depth int) error {
		for _, e := range t.Entries {
			name := prefix + e.Name
			switch {
			case e.Mode == filemode.Dir && depth < 19 && len(name) < 40 && isHex(e.Name):
				sub, err := object.GetTree(s, e.Hash)
				if err != nil {
					return fmt.Errorf("notes tree %s: %w", name, err)
				}
				if err := walk(sub, name, depth+1); err != nil {
					return err
				}
			case e.Mode.IsFile() && len(name) == 40 && isHex(name):
				out[plumbing.NewHash(name)] = e.Hash
			}
		}
		return nil
	}
	if err := walk(root, "", 0); err != nil {
		return nil, err
	}
	return out, nil
}

func isHex(s string) bool {
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return s != ""
}

// writeNotesTree writes the tree of a notes commit: flat for a few notes,
// split by the first two hex digits above notesFanout, as git does.
func writeNotesTree(s storer.EncodedObjectStorer, entries map[plumbing.Hash]plumbing.Hash) (plumbing.Hash, error) {
	names := make([]string, 0, len(entries))
	blobs := make(map[string]plumbing.Hash, len(entries))
	for sha, blob := range entries {
		names = append(names, sha.String())
		blobs[sha.String()] = blob
	}
	sort.Strings(names)
	if len(names) <= notesFanout {
		t := &object.Tree{}
		for _, name := range names {
			t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: filemode.Regular, Hash: blobs[name]})
		}
		return writeTree(s, t)
	}
	root := &object.Tree{}
	for i := 0; i < len(names); {
		dir := names[i][:2]
		sub := &object.Tree{}
		for ; i < len(names) && names[i][:2] == dir; i++ {
			sub.Entries = append(sub.Entries, object.TreeEntry{Name: names[i][2:], Mode: filemode.Regular, Hash: blobs[names[i]]})
		}
		h, err := writeTree(s, sub)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		root.Entries = append(root.Entries, object.TreeEntry{Name: dir, Mode: filemode.Dir, Hash: h})
	}
	return writeTree(s, root)
}

func writeTree(s storer.EncodedObjectStorer, t *object.Tree) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	if err := t.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

func writeBlob(s storer.EncodedObjectStorer, data []byte) (plumbing.Hash, error) {
	obj := s.NewEncodedObject()
	obj.SetType(plumbing.BlobObject)
	obj.SetSize(int64(len(data)))
	w, err := obj.Writer()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	if _, err := w.Write(data); err != nil {
		_ = w.Close()
		return plumbing.ZeroHash, err
	}
	if err := w.Close(); err != nil {
		return plumbing.ZeroHash, err
	}
	return s.SetEncodedObject(obj)
}

func readBlobFrom(s storer.EncodedObjectStorer, h plumbing.Hash) ([]byte, error) {
	b, err := object.GetBlob(s, h)
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

// updateRefLocked moves ref from old (zero: absent) to next in a
// repository people also use, as git does: it takes ref.lock (failing when
// git or another writer holds it), checks that the ref still is old, writes
// next to the lock file and renames it over the ref.
func updateRefLocked(repo *git.Repository, ref plumbing.ReferenceName, old, next plumbing.Hash) error {
	st, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return fmt.Errorf("repository storage %T is not a file system", repo.Storer)
	}
	fsys := st.Filesystem()
	name := ref.String()
	lock := name + ".lock"
	if err := fsys.MkdirAll(path.Dir(name), 0o755); err != nil {
		return err
	}
	f, err := fsys.OpenFile(lock, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
	if errors.Is(err, os.ErrExist) {
		return errNotesLocked
	}
	if err != nil {
		return fmt.Errorf("lock %s: %w", name, err)
	}
	done := false
	defer func() {
		if !done {
			_ = f.Close()
			_ = fsys.Remove(lock)
		}
	}()
	cur, err := refHash(repo, ref)
	if err != nil {
		return err
	}
	if cur != old {
		return errNotesMoved
	}
	if _, err := f.Write([]byte(next.String() + "\n")); err != nil {
		return fmt.Errorf("write %s: %w", lock, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", lock, err)
	}
	if err := fsys.Rename(lock, name); err != nil {
		return fmt.Errorf("rename %s: %w", lock, err)
	}
	done = true
	return nil
}
