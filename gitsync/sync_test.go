package gitsync

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/keelson/keelson/internal/gittest"
)

// TestSyncTransports clones, syncs a new commit and sees an unchanged head
// over each kind of URL, against real servers.
func TestSyncTransports(t *testing.T) {
	tests := []struct {
		name string
		// setup creates a repository and returns it with its source.
		setup func(t *testing.T) (*gittest.Repo, Source)
	}{
		{"local path", func(t *testing.T) (*gittest.Repo, Source) {
			r := gittest.NewRepo(t, "", "repo")
			return r, Source{URL: r.Dir}
		}},
		{"file", func(t *testing.T) (*gittest.Repo, Source) {
			r := gittest.NewRepo(t, "", "repo")
			return r, Source{URL: r.FileURL(), Branch: "main"}
		}},
		{"git daemon", func(t *testing.T) (*gittest.Repo, Source) {
			d := gittest.StartGitDaemon(t, "")
			r := gittest.NewRepo(t, d.Root, "repo")
			return r, Source{URL: d.URL("repo")}
		}},
		{"http basic auth, password file", func(t *testing.T) (*gittest.Repo, Source) {
			s := gittest.StartHTTPServer(t, "", "alice", "pa55word")
			r := gittest.NewRepo(t, s.Root, "repo")
			pw := t.TempDir() + "/password"
			if err := os.WriteFile(pw, []byte("pa55word\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			return r, Source{URL: s.URL("repo"), Auth: Auth{Username: "alice", PasswordFile: pw}}
		}},
		{"http token from env", func(t *testing.T) (*gittest.Repo, Source) {
			s := gittest.StartHTTPServer(t, "", "git", "tok3n")
			r := gittest.NewRepo(t, s.Root, "repo")
			t.Setenv("KEELSON_TEST_TOKEN", "tok3n")
			return r, Source{URL: s.URL("repo"), Auth: Auth{PasswordEnv: "KEELSON_TEST_TOKEN"}}
		}},
		{"ssh", func(t *testing.T) (*gittest.Repo, Source) {
			s := gittest.StartSSHD(t, gittest.SSHDOptions{})
			r := gittest.NewRepo(t, "", "repo")
			return r, Source{URL: s.URL(r.Dir), Auth: Auth{SSHKeyFile: s.ClientKeyFile, KnownHostsFile: s.KnownHostsFile}}
		}},
		{"scp-like", func(t *testing.T) (*gittest.Repo, Source) {
			// user@host:path has no port, so the server listens on port 22
			// of a loopback address of its own.
			host := fmt.Sprintf("127.83.%d.%d", rand.IntN(250)+1, rand.IntN(250)+1)
			if l, err := net.Listen("tcp", host+":22"); err != nil {
				t.Skipf("port 22 of %s is taken: %v", host, err)
			} else {
				l.Close()
			}
			s := gittest.StartSSHD(t, gittest.SSHDOptions{Host: host, Port: 22})
			r := gittest.NewRepo(t, "", "repo")
			return r, Source{URL: s.SCPURL(r.Dir), Auth: Auth{SSHKeyFile: s.ClientKeyFile, KnownHostsFile: s.KnownHostsFile}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g, src := tt.setup(t)
			first := g.CommitFiles("first", map[string]string{
				"apps/web.yaml": "kind: Pod\n",
				"README.md":     "hello\n",
			})
			r, _ := open(t, src)
			rev := mustSync(t, r, first, true)
			if rev.Ref != "refs/heads/main" {
				t.Errorf("Ref = %q, want refs/heads/main", rev.Ref)
			}
			want := Commit{SHA: first, Author: "Test Author", Email: "author@example.com", Message: "first"}
			if diff := cmp.Diff(want, rev.Commit, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Time" }, cmp.Ignore())); diff != "" {
				t.Errorf("Commit (-want +got):\n%s", diff)
			}
			if rev.Commit.Time.IsZero() {
				t.Error("Commit.Time is zero")
			}
			if diff := cmp.Diff(map[string]string{"README.md": "hello\n", "apps/web.yaml": "kind: Pod\n"}, contents(t, rev)); diff != "" {
				t.Errorf("files (-want +got):\n%s", diff)
			}

			mustSync(t, r, first, false) // nothing new

			g.Remove("README.md")
			second := g.CommitFiles("second", map[string]string{"apps/web.yaml": "kind: Service\n"})
			rev = mustSync(t, r, second, true)
			if diff := cmp.Diff(map[string]string{"apps/web.yaml": "kind: Service\n"}, contents(t, rev)); diff != "" {
				t.Errorf("files after second commit (-want +got):\n%s", diff)
			}
			mustSync(t, r, second, false)
		})
	}
}

// TestSyncAuthRefused checks that bad credentials and unknown host keys give
// a clear error that names the source but not the secret, and keep the last
// revision.
func TestSyncAuthRefused(t *testing.T) {
	t.Run("http wrong password", func(t *testing.T) {
		s := gittest.StartHTTPServer(t, "", "alice", "right")
		g := gittest.NewRepo(t, s.Root, "repo")
		g.Commit("first")
		t.Setenv("KEELSON_TEST_PW", "wrong-s3cret")
		r, lb := open(t, Source{URL: s.URL("repo"), Auth: Auth{Username: "alice", PasswordEnv: "KEELSON_TEST_PW"}})
		err := syncErr(t, r, s.URL("repo"), "authentication")
		if strings.Contains(err.Error()+lb.String(), "wrong-s3cret") {
			t.Errorf("the password leaked: %v\n%s", err, lb)
		}
		if r.Last() != nil {
			t.Errorf("Last() = %v after a failed first sync, want nil", r.Last())
		}
	})
	t.Run("http password in URL", func(t *testing.T) {
		// A password in the URL is refused before anything is fetched,
		// without showing it; the same credentials given as Auth work, with
		// the user name in the URL.
		s := gittest.StartHTTPServer(t, "", "alice", "pa55-right")
		g := gittest.NewRepo(t, s.Root, "repo")
		head := g.Commit("first")
		url := strings.Replace(s.URL("repo"), "http://", "http://alice:pa55-right@", 1)
		log, lb := testLogger(t)
		if _, err := Open(Source{URL: url}, filepath.Join(t.TempDir(), "cache"), log); !errors.Is(err, ErrCredentialsInURL) {
			t.Fatalf("Open with a password in the URL = %v, want ErrCredentialsInURL", err)
		} else if strings.Contains(err.Error()+lb.String(), "pa55-right") {
			t.Errorf("the password leaked: %v\n%s", err, lb)
		}
		if got := s.InfoRefs.Load() + s.UploadPack.Load() + s.Refused.Load(); got != 0 {
			t.Errorf("%d request(s) reached the server with a refused source", got)
		}
		if _, err := OpenNotes(Source{URL: url}, t.TempDir(), log); !errors.Is(err, ErrCredentialsInURL) {
			t.Errorf("OpenNotes with a password in the URL = %v, want ErrCredentialsInURL", err)
		}

		pw := filepath.Join(t.TempDir(), "password")
		if err := os.WriteFile(pw, []byte("pa55-right\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		userURL := strings.Replace(s.URL("repo"), "http://", "http://alice@", 1)
		r, _ := open(t, Source{URL: userURL, Auth: Auth{PasswordFile: pw}})
		mustSync(t, r, head, true)
	})
	t.Run("ssh unknown host key", func(t *testing.T) {
		s := gittest.StartSSHD(t, gittest.SSHDOptions{})
		g := gittest.NewRepo(t, "", "repo")
		g.Commit("first")
		dir := t.TempDir()
		_, otherPub := gittest.GenerateSSHKey(t, dir, "other")
		kh := dir + "/known_hosts"
		if err := os.WriteFile(kh, []byte(gittest.KnownHostsLine(s.Host, s.Port, otherPub)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r, _ := open(t, Source{URL: s.URL(g.Dir), Auth: Auth{SSHKeyFile: s.ClientKeyFile, KnownHostsFile: kh}})
		syncErr(t, r, s.URL(g.Dir), "key mismatch")
	})
	t.Run("ssh host not in known_hosts", func(t *testing.T) {
		s := gittest.StartSSHD(t, gittest.SSHDOptions{})
		g := gittest.NewRepo(t, "", "repo")
		g.Commit("first")
		kh := t.TempDir() + "/known_hosts"
		if err := os.WriteFile(kh, []byte(gittest.KnownHostsLine("127.0.0.9", 22, s.HostKey)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		r, _ := open(t, Source{URL: s.URL(g.Dir), Auth: Auth{SSHKeyFile: s.ClientKeyFile, KnownHostsFile: kh}})
		syncErr(t, r, s.URL(g.Dir), "key is unknown")
	})
	t.Run("ssh key not authorized", func(t *testing.T) {
		s := gittest.StartSSHD(t, gittest.SSHDOptions{})
		g := gittest.NewRepo(t, "", "repo")
		g.Commit("first")
		other, _ := gittest.GenerateSSHKey(t, t.TempDir(), "other")
		r, _ := open(t, Source{URL: s.URL(g.Dir), Auth: Auth{SSHKeyFile: other, KnownHostsFile: s.KnownHostsFile}})
		syncErr(t, r, s.URL(g.Dir), "unable to authenticate")
	})
}

// TestSyncUnchangedDoesNotFetch checks that an unchanged remote head costs
// one ref listing and no fetch, and that a restarted process reuses the
// clone without fetching again.
func TestSyncUnchangedDoesNotFetch(t *testing.T) {
	s := gittest.StartHTTPServer(t, "", "", "")
	g := gittest.NewRepo(t, s.Root, "repo")
	head := g.CommitFiles("first", map[string]string{"a.yaml": "a\n"})
	cache := t.TempDir() + "/cache"
	log, _ := testLogger(t)
	r, err := Open(Source{URL: s.URL("repo")}, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	mustSync(t, r, head, true)
	if got := s.UploadPack.Load(); got != 1 {
		t.Fatalf("fetches after the first sync = %d, want 1", got)
	}
	listings := s.InfoRefs.Load()
	for range 3 {
		mustSync(t, r, head, false)
	}
	if got := s.UploadPack.Load(); got != 1 {
		t.Errorf("fetches after unchanged syncs = %d, want 1", got)
	}
	if got := s.InfoRefs.Load() - listings; got != 3 {
		t.Errorf("ref listings for 3 unchanged syncs = %d, want 3", got)
	}

	// A restart: the clone on disk is reused.
	r2, err := Open(Source{URL: s.URL("repo")}, cache, log)
	if err != nil {
		t.Fatal(err)
	}
	rev := mustSync(t, r2, head, true)
	if got := s.UploadPack.Load(); got != 1 {
		t.Errorf("fetches after a restart = %d, want 1 (clone reused)", got)
	}
	if diff := cmp.Diff(map[string]string{"a.yaml": "a\n"}, contents(t, rev)); diff != "" {
		t.Errorf("files (-want +got):\n%s", diff)
	}
}
