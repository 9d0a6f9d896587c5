package gittest

import (
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// lsRemote runs the git client against url, with extra environment.
func lsRemote(t *testing.T, url string, env ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("git", "ls-remote", url)
	cmd.Env = append(append(cmd.Environ(), GitEnv()...), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func wantRefs(t *testing.T, url, head string, env ...string) {
	t.Helper()
	out, err := lsRemote(t, url, env...)
	if err != nil {
		t.Fatalf("git ls-remote %s: %v\n%s", url, err, out)
	}
	if !strings.Contains(out, head+"\trefs/heads/main") {
		t.Fatalf("git ls-remote %s = %q, want %s on refs/heads/main", url, out, head)
	}
}

func wantDown(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", addr)
	}
}

func TestRepo(t *testing.T) {
	r := NewRepo(t, "", "repo")
	a := r.CommitFiles("a", map[string]string{"x/y.yaml": "1"})
	r.Symlink("y.yaml", "x/link")
	b := r.Commit("b")
	if a == b || len(b) != 40 {
		t.Fatalf("commits %q, %q", a, b)
	}
	if got := r.Git("show", "-s", "--format=%an <%ae> %s", "HEAD"); got != "Test Author <author@example.com> b" {
		t.Errorf("HEAD = %q", got)
	}
	if got := r.Git("ls-tree", "-r", "--name-only", "HEAD"); got != "x/link\nx/y.yaml" {
		t.Errorf("tree = %q", got)
	}
}

func TestGitDaemon(t *testing.T) {
	d := StartGitDaemon(t, "")
	r := NewRepo(t, d.Root, "repo")
	head := r.Commit("first")
	wantRefs(t, d.URL("repo"), head)
	d.Stop()
	wantDown(t, d.Addr)
	d.Start()
	wantRefs(t, d.URL("repo"), head)
}

func TestHTTPServer(t *testing.T) {
	s := StartHTTPServer(t, "", "alice", "secret")
	r := NewRepo(t, s.Root, "repo")
	head := r.Commit("first")
	url := strings.Replace(s.URL("repo"), "http://", "http://alice:secret@", 1)
	wantRefs(t, url, head)
	if s.InfoRefs.Load() == 0 {
		t.Error("InfoRefs not counted")
	}
	bad := strings.Replace(s.URL("repo"), "http://", "http://alice:wrong@", 1)
	if out, err := lsRemote(t, bad); err == nil {
		t.Errorf("wrong password accepted: %s", out)
	}
	if s.Refused.Load() == 0 {
		t.Error("refusal not counted")
	}
	s.Stop()
	wantDown(t, s.Addr)
	s.Start()
	wantRefs(t, url, head)
}

func TestSSHD(t *testing.T) {
	s := StartSSHD(t, SSHDOptions{})
	r := NewRepo(t, "", "repo")
	head := r.Commit("first")
	sshCmd := "GIT_SSH_COMMAND=ssh -o BatchMode=yes -o IdentitiesOnly=yes -i " + s.ClientKeyFile +
		" -o UserKnownHostsFile=" + s.KnownHostsFile + " -o StrictHostKeyChecking=yes"
	wantRefs(t, s.URL(r.Dir), head, sshCmd)
	s.Stop()
	wantDown(t, s.Addr)
	s.Start()
	wantRefs(t, s.URL(r.Dir), head, sshCmd)
}

func TestKnownHostsLine(t *testing.T) {
	key := "ssh-ed25519 AAAAC3Nza comment"
	if got, want := KnownHostsLine("127.0.0.1", 2222, key), "[127.0.0.1]:2222 ssh-ed25519 AAAAC3Nza"; got != want {
		t.Errorf("KnownHostsLine = %q, want %q", got, want)
	}
	if got, want := KnownHostsLine("127.0.0.1", 22, key), "127.0.0.1 ssh-ed25519 AAAAC3Nza"; got != want {
		t.Errorf("KnownHostsLine port 22 = %q, want %q", got, want)
	}
}
