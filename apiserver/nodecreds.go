package apiserver

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strings"
	"sync"

	"github.com/keelson/keelson/apiserver/api"
)

// nodeCreds are the credentials the controller gives its nodes when they
// register with the join token, as kubelet's bootstrap token is traded for
// a node's own certificate. A node's requests about itself (its lease, its
// pods' status, its Secrets) must carry its own credential, so that a node
// acts for itself only: one that is taken over cannot report for another
// node or read the Secrets of another node's pods. The join token registers
// and nothing else.
//
// Credentials live in memory: a controller that restarted knows none, and
// agents register again with the join token (the client does so when a
// request is refused), as they register again when it has forgotten their
// node.
type nodeCreds struct {
	mu sync.Mutex
	m  map[string][sha256.Size]byte // node name -> hash of its credential
}

// issue makes a new credential for node, replacing the one it had.
func (c *nodeCreds) issue(node string) (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	cred := api.NodeCredentialPrefix + base64.RawURLEncoding.EncodeToString(b)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string][sha256.Size]byte{}
	}
	c.m[node] = sha256.Sum256([]byte(cred))
	return cred, nil
}

// check tells whether cred is node's credential.
func (c *nodeCreds) check(node, cred string) bool {
	if node == "" || !strings.HasPrefix(cred, api.NodeCredentialPrefix) {
		return false
	}
	sum := sha256.Sum256([]byte(cred))
	c.mu.Lock()
	want, ok := c.m[node]
	c.mu.Unlock()
	return ok && subtle.ConstantTimeCompare(sum[:], want[:]) == 1
}

// bearer is the token a request carries.
func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get(api.AgentTokenHeader), "Bearer ")
	return tok
}
