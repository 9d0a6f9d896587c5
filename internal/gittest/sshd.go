package gittest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// SSHD is Debian's OpenSSH server on 127.0.0.1 (or another loopback
// address), with a temporary host key and configuration, letting User in
// with the key in ClientKeyFile only. It needs root.
type SSHD struct {
	Addr string // host:port
	Host string
	Port int
	User string // the user running the test
	// ClientKeyFile is a private key the server accepts, KnownHostsFile a
	// known_hosts file naming the server's host key.
	ClientKeyFile  string
	KnownHostsFile string
	// HostKey is the server's public host key ("ssh-ed25519 AAAA...").
	HostKey string
	p       *process
}

// SSHDOptions configures StartSSHD.
type SSHDOptions struct {
	// Host to listen on; default 127.0.0.1. Any 127.x.y.z address is
	// loopback on Linux, which lets a test listen on port 22 without
	// disturbing a system sshd.
	Host string
	// Port; default a free one.
	Port int
}

const sshdPath = "/usr/sbin/sshd"

// StartSSHD starts sshd until the test ends. It skips the test (fails it in
// CI) without root or sshd.
func StartSSHD(tb testing.TB, opts SSHDOptions) *SSHD {
	tb.Helper()
	RequireRoot(tb, "sshd runs as root to log a user in")
	RequireBinary(tb, sshdPath)
	RequireBinary(tb, "ssh-keygen")
	if opts.Host == "" {
		opts.Host = "127.0.0.1"
	}
	if opts.Port == 0 {
		opts.Port = freePort(tb, opts.Host)
	}
	u, err := user.Current()
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	hostKey, hostPub := GenerateSSHKey(tb, dir, "host_ed25519")
	clientKey, clientPub := GenerateSSHKey(tb, dir, "client_ed25519")
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, []byte(clientPub+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	// sshd insists on its privilege separation directory.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		tb.Fatalf("sshd privilege separation directory: %v", err)
	}
	s := &SSHD{
		Host:           opts.Host,
		Port:           opts.Port,
		Addr:           net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)),
		User:           u.Username,
		ClientKeyFile:  clientKey,
		KnownHostsFile: filepath.Join(dir, "known_hosts"),
		HostKey:        hostPub,
	}
	if err := os.WriteFile(s.KnownHostsFile, []byte(KnownHostsLine(s.Host, s.Port, hostPub)+"\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
	config := strings.Join([]string{
		"Port " + strconv.Itoa(opts.Port),
		"ListenAddress " + opts.Host,
		"HostKey " + hostKey,
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + authorized,
		"StrictModes no",
		"UsePAM no",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"AllowUsers " + u.Username,
		"AllowTcpForwarding no",
		"X11Forwarding no",
		"PrintMotd no",
		"PermitUserEnvironment no",
		"MaxStartups 100",
		"LogLevel ERROR",
	}, "\n") + "\n"
	cfgFile := filepath.Join(dir, "sshd_config")
	if err := os.WriteFile(cfgFile, []byte(config), 0o600); err != nil {
		tb.Fatal(err)
	}
	// Check the configuration first for a clear error.
	if out, err := exec.Command(sshdPath, "-t", "-f", cfgFile).CombinedOutput(); err != nil {
		tb.Fatalf("sshd -t: %v\n%s", err, out)
	}
	s.p = &process{tb: tb, name: "sshd", addr: s.Addr, args: []string{sshdPath, "-D", "-e", "-f", cfgFile}}
	s.p.start()
	tb.Cleanup(s.Stop)
	return s
}

// URL is the ssh:// URL of the repository at the absolute path dir.
func (s *SSHD) URL(dir string) string {
	return fmt.Sprintf("ssh://%s@%s%s", s.User, s.Addr, dir)
}

// SCPURL is the scp-like user@host:path form, which has no port: it reaches
// the server only when it listens on port 22.
func (s *SSHD) SCPURL(dir string) string {
	return fmt.Sprintf("%s@%s:%s", s.User, s.Host, dir)
}

// Stop stops the server (idempotent); Start starts it again on its port.
func (s *SSHD) Stop()  { s.p.stop() }
func (s *SSHD) Start() { s.p.tb.Helper(); s.p.start() }

// GenerateSSHKey writes a new ed25519 key pair dir/name and dir/name.pub
// and returns the private key's path and the public key line.
func GenerateSSHKey(tb testing.TB, dir, name string) (privateKeyFile, publicKey string) {
	tb.Helper()
	p := filepath.Join(dir, name)
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", p).CombinedOutput(); err != nil {
		tb.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(p + ".pub")
	if err != nil {
		tb.Fatal(err)
	}
	return p, strings.TrimSpace(string(pub))
}

// KnownHostsLine is the known_hosts line for a host key served on
// host:port ("[host]:port key", or "host key" for port 22).
func KnownHostsLine(host string, port int, publicKey string) string {
	fields := strings.Fields(publicKey)
	if len(fields) > 2 {
		publicKey = fields[0] + " " + fields[1] // drop the comment
	}
	if port == 22 {
		return host + " " + publicKey
	}
	return fmt.Sprintf("[%s]:%d %s", host, port, publicKey)
}
