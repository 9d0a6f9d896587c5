package gitsync

import (
	"errors"
	"strings"
	"testing"
)

func TestSourceValidate(t *testing.T) {
	sha := strings.Repeat("ab", 20)
	tests := []struct {
		name    string
		src     Source
		wantErr string // "" = valid
	}{
		{"local path", Source{URL: "/srv/git/repo"}, ""},
		{"relative path", Source{URL: "repo"}, ""},
		{"file", Source{URL: "file:///srv/git/repo", Branch: "main"}, ""},
		{"git", Source{URL: "git://host/repo.git", Tag: "v1"}, ""},
		{"https token", Source{URL: "https://host/repo.git", Auth: Auth{PasswordEnv: "TOKEN"}}, ""},
		{"ssh", Source{URL: "ssh://git@host:2222/repo.git", Auth: Auth{SSHKeyFile: "/k"}}, ""},
		{"scp-like", Source{URL: "git@host:org/repo.git", Auth: Auth{SSHKeyFile: "/k"}}, ""},
		{"commit", Source{URL: "/r", Commit: sha}, ""},
		{"path", Source{URL: "/r", Path: "clusters/prod/"}, ""},
		{"empty URL", Source{}, "URL is empty"},
		{"bad scheme", Source{URL: "ftp://host/repo"}, "not supported"},
		{"two refs", Source{URL: "/r", Branch: "main", Tag: "v1"}, "only one of branch"},
		{"short commit", Source{URL: "/r", Commit: "abc123"}, "full 40-character"},
		{"full ref name", Source{URL: "/r", Branch: "refs/heads/main"}, "short name"},
		{"absolute path", Source{URL: "/r", Path: "/etc"}, "relative"},
		{"dotdot path", Source{URL: "/r", Path: "a/../../etc"}, `".."`},
		{"password on git", Source{URL: "git://h/r", Auth: Auth{PasswordFile: "/p"}}, "http(s)"},
		{"key on https", Source{URL: "https://h/r", Auth: Auth{SSHKeyFile: "/k"}}, "ssh://"},
		{"two password sources", Source{URL: "https://h/r", Auth: Auth{PasswordFile: "/p", PasswordEnv: "P"}}, "only one of password"},
		// A user name in the URL is fine; a password or token is not.
		{"https user", Source{URL: "https://deploy@h/r", Auth: Auth{PasswordFile: "/p"}}, ""},
		{"https token as user", Source{URL: "https://ghp_x@h/r"}, ""},
		{"https empty password", Source{URL: "https://deploy:@h/r"}, ""},
		{"https password", Source{URL: "https://deploy:s3cret@h/r"}, "Auth.PasswordFile"},
		{"http password and a password file", Source{URL: "http://deploy:s3cret@h/r", Auth: Auth{PasswordFile: "/p"}}, "carries a password"},
		{"ssh password", Source{URL: "ssh://git:s3cret@h/r"}, "Auth.SSHKeyFile"},
		{"scp-like password", Source{URL: "git:s3cret@h:org/r.git"}, "Auth.SSHKeyFile"},
		{"git password", Source{URL: "git://u:s3cret@h/r"}, "carries a password"},
		{"file password", Source{URL: "file://u:s3cret@/srv/r"}, "carries a password"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.src.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Validate() = %v, want error containing %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Validate() = %v shows the password", err)
			}
			if wantCred := strings.Contains(tt.wantErr, "Auth.") || strings.Contains(tt.wantErr, "carries a password"); wantCred != errors.Is(err, ErrCredentialsInURL) {
				t.Errorf("errors.Is(%v, ErrCredentialsInURL) = %v, want %v", err, !wantCred, wantCred)
			}
		})
	}
}

func TestSourceStringHidesSecrets(t *testing.T) {
	tests := []struct{ url, want string }{
		{"https://user:s3cret@host/repo.git", "https://user:REDACTED@host/repo.git"},
		{"https://s3cret@host/repo.git", "https://s3cret@host/repo.git"}, // a user name, not a secret by URL rules
		{"https://host/repo.git", "https://host/repo.git"},
		{"git@host:org/repo.git", "git@host:org/repo.git"},
		{"git:s3cret@host:org/repo.git", "git:REDACTED@host:org/repo.git"},
		{"/srv/repo", "/srv/repo"},
	}
	for _, tt := range tests {
		src := Source{URL: tt.url}
		if got := src.String(); got != tt.want {
			t.Errorf("Source{URL: %q}.String() = %q, want %q", tt.url, got, tt.want)
		}
	}
	// Errors name the source without the password.
	err := Source{URL: "https://user:s3cret@host/repo.git", Branch: "a", Tag: "b"}.Validate()
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("Validate() = %v, want an error without the password", err)
	}
}
