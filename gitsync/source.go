package gitsync

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Auth says how to authenticate to the remote. Secrets are never held in a
// Source: only the names of the files or environment variables they are read
// from, at each sync (so a rotated token is picked up without a restart).
type Auth struct {
	// SSHKeyFile is a private key (unencrypted) for ssh:// and scp-like URLs.
	SSHKeyFile string
	// KnownHostsFile is checked against the server's host key; default
	// ~/.ssh/known_hosts. Host keys are always checked.
	KnownHostsFile string
	// SSHUser overrides the user of the URL (default "git").
	SSHUser string

	// Username for HTTP(S) basic auth; default "git", which suits tokens.
	Username string
	// PasswordFile or PasswordEnv name where the password or token is read
	// from (a trailing newline in the file is ignored).
	PasswordFile string
	PasswordEnv  string
}

// Source is a Git repository, the ref followed in it and the sub-path the
// manifests are read from.
type Source struct {
	// URL is a local path, or a file://, git://, http(s)://, ssh:// or
	// scp-like (user@host:path) URL.
	URL string
	// At most one of Branch, Tag and Commit (a full SHA). With none, the
	// remote's default branch (its HEAD, or "main") is followed.
	Branch string
	Tag    string
	Commit string
	// Path is a slash-separated directory relative to the repository root;
	// "" is the root.
	Path string
	Auth Auth
}

type urlKind int

const (
	kindLocal urlKind = iota
	kindFile
	kindGit
	kindHTTP
	kindSSH
)

var (
	scpLike = regexp.MustCompile(`^(?:[^@/]+@)?[^/:]+:`)
	fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)
)

// ErrCredentialsInURL is returned (wrapped) by Source.Validate for a URL
// that carries a password or token (https://user:TOKEN@host/...): a URL
// ends up in flags, shell history, process listings and logs, so secrets
// are only read from the files or environment variables Auth names. A user
// name alone (https://user@host/..., git@host:path) is allowed.
var ErrCredentialsInURL = errors.New("the URL carries a password or token")

func (s Source) kind() (urlKind, error) {
	u := s.URL
	switch {
	case u == "":
		return 0, errors.New("URL is empty")
	case strings.HasPrefix(u, "file://"):
		return kindFile, nil
	case strings.HasPrefix(u, "git://"):
		return kindGit, nil
	case strings.HasPrefix(u, "http://"), strings.HasPrefix(u, "https://"):
		return kindHTTP, nil
	case strings.HasPrefix(u, "ssh://"):
		return kindSSH, nil
	case strings.Contains(u, "://"):
		return 0, fmt.Errorf("URL scheme of %q is not supported (use a path, file://, git://, http(s)://, ssh:// or user@host:path)", s.String())
	case scpLike.MatchString(u):
		return kindSSH, nil
	default:
		return kindLocal, nil
	}
}

// Validate reports whether the source is complete and consistent.
func (s Source) Validate() error {
	k, err := s.kind()
	if err != nil {
		return fmt.Errorf("git source: %w", err)
	}
	if strings.Contains(s.URL, "://") {
		if _, err := url.Parse(s.URL); err != nil {
			return fmt.Errorf("git source %s: bad URL: %w", s, redactErr(err))
		}
	}
	if hasURLPassword(s.URL, k) {
		how := "read it from a file (Auth.PasswordFile) or an environment variable (Auth.PasswordEnv)"
		if k == kindSSH {
			how = "authenticate with a key (Auth.SSHKeyFile)"
		}
		return fmt.Errorf("git source %s: %w: %s", s, ErrCredentialsInURL, how)
	}
	n := 0
	for _, v := range []string{s.Branch, s.Tag, s.Commit} {
		if v != "" {
			n++
		}
	}
	if n > 1 {
		return fmt.Errorf("git source %s: set only one of branch (%q), tag (%q) and commit (%q)", s, s.Branch, s.Tag, s.Commit)
	}
	if s.Commit != "" && !fullSHA.MatchString(s.Commit) {
		return fmt.Errorf("git source %s: commit %q is not a full 40-character hex SHA", s, s.Commit)
	}
	for _, r := range []string{s.Branch, s.Tag} {
		if r != "" && (strings.HasPrefix(r, "refs/") || strings.ContainsAny(r, " ~^:?*[\\") || strings.Contains(r, "..")) {
			return fmt.Errorf("git source %s: bad branch or tag name %q (give the short name, e.g. \"main\")", s, r)
		}
	}
	if _, err := cleanSubPath(s.Path); err != nil {
		return fmt.Errorf("git source %s: %w", s, err)
	}
	a := s.Auth
	if a.PasswordFile != "" && a.PasswordEnv != "" {
		return fmt.Errorf("git source %s: set only one of password file and password environment variable", s)
	}
	if (a.PasswordFile != "" || a.PasswordEnv != "" || a.Username != "") && k != kindHTTP {
		return fmt.Errorf("git source %s: username/password auth needs an http(s) URL", s)
	}
	if (a.SSHKeyFile != "" || a.KnownHostsFile != "" || a.SSHUser != "") && k != kindSSH {
		return fmt.Errorf("git source %s: SSH key auth needs an ssh:// or user@host:path URL", s)
	}
	return nil
}

// hasURLPassword reports whether raw, a URL of kind k, carries a non-empty
// password in its user information: https://user:TOKEN@host/... or
// user:TOKEN@host:path.
func hasURLPassword(raw string, k urlKind) bool {
	if strings.Contains(raw, "://") {
		u, err := url.Parse(raw)
		if err != nil || u.User == nil {
			return false
		}
		pw, _ := u.User.Password()
		return pw != ""
	}
	if k != kindSSH {
		return false // a local path
	}
	userinfo, _, found := strings.Cut(raw, "@")
	if !found || strings.Contains(userinfo, "/") {
		return false
	}
	_, pw, _ := strings.Cut(userinfo, ":")
	return pw != ""
}

// cleanSubPath returns p cleaned, "" for the root.
func cleanSubPath(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	if path.IsAbs(p) || strings.HasPrefix(p, `\`) {
		return "", fmt.Errorf("path %q must be relative to the repository root", p)
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return "", fmt.Errorf("path %q must not contain \"..\"", p)
		}
	}
	c := path.Clean(p)
	if c == "." {
		return "", nil
	}
	return c, nil
}

// String is the URL without any password, followed by what is followed and
// the sub-path. It is safe to log.
func (s Source) String() string {
	return redactURL(s.URL)
}

// refName is the full ref the source follows, or "" for the default branch.
func (s Source) refName() string {
	switch {
	case s.Branch != "":
		return "refs/heads/" + s.Branch
	case s.Tag != "":
		return "refs/tags/" + s.Tag
	case s.Commit != "":
		return s.Commit
	}
	return ""
}

// redactURL removes the password from the userinfo of a URL.
func redactURL(raw string) string {
	if !strings.Contains(raw, "://") {
		// Paths carry no password; an scp-like URL might (user:pw@host:path).
		if userinfo, rest, found := strings.Cut(raw, "@"); found && !strings.Contains(userinfo, "/") {
			if user, _, hasPw := strings.Cut(userinfo, ":"); hasPw {
				return user + ":REDACTED@" + rest
			}
		}
		return raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Do not risk echoing a secret from an unparsable URL.
		if i := strings.Index(raw, "@"); i >= 0 {
			if j := strings.Index(raw, "://"); j >= 0 && j < i {
				return raw[:j+3] + "REDACTED" + raw[i:]
			}
		}
		return raw
	}
	if u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
	}
	return u.String()
}

// redactErr keeps url.Error from echoing a password.
func redactErr(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %q: %w", ue.Op, redactURL(ue.URL), ue.Err)
	}
	return err
}

// endpoint returns the URL handed to go-git: local paths made absolute,
// others as given (Validate has refused any with a password).
func (s Source) endpoint() (string, error) {
	k, err := s.kind()
	if err != nil {
		return "", err
	}
	if k == kindLocal {
		return filepath.Abs(s.URL)
	}
	return s.URL, nil
}

// localDir is the directory of a local source, "" for remote ones.
func (s Source) localDir() string {
	k, err := s.kind()
	if err != nil {
		return ""
	}
	switch k {
	case kindLocal:
		abs, err := filepath.Abs(s.URL)
		if err != nil {
			return ""
		}
		return abs
	case kindFile:
		u, err := url.Parse(s.URL)
		if err != nil {
			return ""
		}
		return u.Path
	}
	return ""
}

// authMethod builds the go-git auth for one connection, reading secrets
// from their files or environment variables now.
func (s Source) authMethod() (transport.AuthMethod, error) {
	k, err := s.kind()
	if err != nil {
		return nil, err
	}
	a := s.Auth
	switch k {
	case kindHTTP:
		var pw string
		switch {
		case a.PasswordFile != "":
			b, err := os.ReadFile(a.PasswordFile)
			if err != nil {
				return nil, fmt.Errorf("read password file: %w", err)
			}
			pw = strings.TrimRight(string(b), "\r\n")
		case a.PasswordEnv != "":
			v, ok := os.LookupEnv(a.PasswordEnv)
			if !ok {
				return nil, fmt.Errorf("password environment variable %s is not set", a.PasswordEnv)
			}
			pw = v
		}
		user := a.Username
		if user == "" {
			if u, err := url.Parse(s.URL); err == nil && u.User != nil {
				user = u.User.Username()
			}
		}
		if pw == "" && user == "" {
			return nil, nil
		}
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: pw}, nil
	case kindSSH:
		ep, err := transport.NewEndpoint(s.URL)
		if err != nil {
			return nil, err
		}
		user := a.SSHUser
		if user == "" {
			user = ep.User
		}
		if user == "" {
			user = "git"
		}
		var files []string
		if a.KnownHostsFile != "" {
			files = append(files, a.KnownHostsFile)
		}
		db, err := gitssh.NewKnownHostsDb(files...) // default: ~/.ssh/known_hosts
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		helper := gitssh.HostKeyCallbackHelper{
			HostKeyCallback:   db.HostKeyCallback(),
			HostKeyAlgorithms: db.HostKeyAlgorithms(sshHostPort(ep)),
		}
		if a.SSHKeyFile == "" {
			agent, err := gitssh.NewSSHAgentAuth(user)
			if err != nil {
				return nil, fmt.Errorf("no SSH key file given and no SSH agent: %w", err)
			}
			agent.HostKeyCallbackHelper = helper
			return agent, nil
		}
		keys, err := gitssh.NewPublicKeysFromFile(user, a.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("SSH key %s: %w", a.SSHKeyFile, err)
		}
		keys.HostKeyCallbackHelper = helper
		return keys, nil
	}
	return nil, nil
}

func sshHostPort(ep *transport.Endpoint) string {
	port := ep.Port
	if port == 0 {
		port = 22
	}
	return fmt.Sprintf("%s:%d", ep.Host, port)
}
