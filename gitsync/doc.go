// Package gitsync turns a Git source (a URL, a branch, tag or commit, a
// sub-path and credentials) into Revisions: a commit and the files under the
// sub-path, read lazily from a local clone. It is the first step of Keelson's
// data flow (git push → gitsync → manifest → reconciler → store).
//
// A Repo keeps a bare clone in a cache directory it owns, and reuses it
// across restarts. Repo.Sync first lists the remote's refs (as git ls-remote
// and Flux do) and fetches, incrementally and with a force refspec, only when
// the followed ref has moved; Resolve and Log answer history questions (the
// files of any commit, the commits that touched a path) from the clone, for
// `keelson diff`, and History.Object lists the commits that changed one
// object (its files decoded with the manifest package at each commit) for
// `rollout history`. Notes reads and writes refs/notes/keelson, where the
// controller records what became of each commit (OutcomeNote). A Watcher
// calls Sync at start, every poll interval, within milliseconds of a commit
// in a local repository (fsnotify on its refs) and on Trigger, which
// WebhookHandler calls for GitHub, GitLab and generic push notifications.
//
// Invariants:
//
//   - A failed sync changes nothing. Server down, authentication refused, a
//     deleted branch or tag: Sync returns an error naming the source and the
//     ref, Repo.Last keeps the last good revision, and a later Sync recovers
//     by itself. The Watcher retries with back-off (1 s doubling up to the
//     poll interval); a Trigger always syncs at once.
//   - History rewrites are followed: the followed ref is whatever the remote
//     says now (force-push), never merged.
//   - A damaged clone (broken HEAD or config, missing or truncated objects,
//     garbage) is logged, removed and cloned again; it is never fatal.
//   - Secrets are never logged nor shown: passwords and tokens are read from
//     a file or an environment variable at each connection, never from the
//     URL (a URL with a password is refused: ErrCredentialsInURL), Source.String
//     and every error strip passwords from URLs, and SSH host keys are always
//     checked against known_hosts.
//   - A Revision lists every file under the sub-path (symlinks with their
//     target, no submodules, no filtering: that is the manifest package's
//     job), sorted by path. A Revision is immutable; its Read functions stay
//     valid while the clone holds the objects, which it always does for
//     commits it has synced.
//   - History walks hold the clone's lock only a few hundred commits at a
//     time and never while decoding; a Sync that replaces the open clone
//     meanwhile restarts the walk, which loses nothing.
//   - Notes never touch a Repo's clone. Existing notes are never dropped:
//     a note someone else wrote on a commit is kept before Keelson's text,
//     a notes ref moved by another writer is read again and merged (a
//     local one under git's ref lock file, a remote one by fetching after
//     a refused push), and notes are keyed by SHA, so they outlive a
//     force-push.
//
// Repo, History, Notes and Watcher are safe for concurrent use; all Watcher callbacks run on
// the goroutine of Watcher.Run, which returns only when every goroutine it
// started has exited.
package gitsync
