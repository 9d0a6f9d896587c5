// Package gittest creates Git repositories and starts real Git servers for
// tests and benchmarks: git daemon (git://), git http-backend behind
// net/http/cgi with basic auth (http://) and Debian's OpenSSH sshd (ssh://).
// Servers listen on 127.0.0.1 on ports of their own, can be stopped and
// started again on the same port (to simulate an outage), and are stopped,
// with their temporary files removed, by tb.Cleanup.
//
// Helpers fail the test on error; none of them is safe to call from a
// goroutine other than the test's.
package gittest

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Repo is a non-bare repository with a work tree, on branch main.
type Repo struct {
	tb  testing.TB
	Dir string
	n   int // commits made, for distinct and increasing commit times
}

// NewRepo creates an empty repository named name under root (for example a
// server's Root), or in a new temporary directory when root is "".
func NewRepo(tb testing.TB, root, name string) *Repo {
	tb.Helper()
	if root == "" {
		root = tb.TempDir()
	}
	r := &Repo{tb: tb, Dir: filepath.Join(root, name)}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	r.Git("init", "-q", "-b", "main")
	return r
}

// base is the time of a repository's first commit; each commit is one
// second later, so that commit order is time order.
var base = time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)

// Git runs git in the repository and returns its trimmed standard output.
func (r *Repo) Git(args ...string) string {
	r.tb.Helper()
	out, err := r.git(args...)
	if err != nil {
		r.tb.Fatal(err)
	}
	return out
}

// GitInput runs git with stdin as its standard input (for example
// `git fast-import`, to make many commits quickly).
func (r *Repo) GitInput(stdin string, args ...string) string {
	r.tb.Helper()
	out, err := r.gitIn(stdin, args...)
	if err != nil {
		r.tb.Fatal(err)
	}
	return out
}

func (r *Repo) git(args ...string) (string, error) { return r.gitIn("", args...) }

func (r *Repo) gitIn(stdin string, args ...string) (string, error) {
	date := base.Add(time.Duration(r.n) * time.Second).Format(time.RFC3339)
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Stdin = strings.NewReader(stdin)
	cmd.Env = append(os.Environ(), GitEnv()...)
	cmd.Env = append(cmd.Env, "GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := stderr.String()
		if len(msg) > 2000 {
			msg = msg[:2000] + "..."
		}
		return "", fmt.Errorf("git %s in %s: %w\n%s", strings.Join(args, " "), r.Dir, err, msg)
	}
	return strings.TrimSpace(stdout.String()), nil
}

// GitEnv isolates git from the user's and the system's configuration and
// names the test author.
func GitEnv() []string {
	return []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Test Author",
		"GIT_AUTHOR_EMAIL=author@example.com",
		"GIT_COMMITTER_NAME=Test Committer",
		"GIT_COMMITTER_EMAIL=committer@example.com",
		"GIT_TERMINAL_PROMPT=0",
	}
}

// WriteFile writes a file of the work tree, creating its directories.
func (r *Repo) WriteFile(name, content string) {
	r.tb.Helper()
	p := filepath.Join(r.Dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.tb.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		r.tb.Fatal(err)
	}
}

// Symlink creates a symbolic link name → target in the work tree.
func (r *Repo) Symlink(target, name string) {
	r.tb.Helper()
	p := filepath.Join(r.Dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.tb.Fatal(err)
	}
	if err := os.Symlink(target, p); err != nil {
		r.tb.Fatal(err)
	}
}

// Remove deletes a file or directory of the work tree.
func (r *Repo) Remove(name string) {
	r.tb.Helper()
	if err := os.RemoveAll(filepath.Join(r.Dir, filepath.FromSlash(name))); err != nil {
		r.tb.Fatal(err)
	}
}

// Commit commits every change of the work tree (an empty commit when there
// is none) and returns its SHA.
func (r *Repo) Commit(msg string) string {
	r.tb.Helper()
	r.Git("add", "-A")
	r.n++
	r.Git("commit", "-q", "--allow-empty", "--no-verify", "-m", msg)
	return r.Head()
}

// CommitFiles writes files (path → content) and commits them.
func (r *Repo) CommitFiles(msg string, files map[string]string) string {
	r.tb.Helper()
	for name, content := range files {
		r.WriteFile(name, content)
	}
	return r.Commit(msg)
}

// Head returns the SHA of HEAD.
func (r *Repo) Head() string {
	r.tb.Helper()
	return r.Git("rev-parse", "HEAD")
}

// FileURL is the file:// URL of the repository.
func (r *Repo) FileURL() string { return "file://" + r.Dir }
