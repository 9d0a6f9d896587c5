package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/internal/gittest"
)

// githubPush posts a GitHub-style push notification for sha to the
// controller's webhook, signed (X-Hub-Signature-256) with secret, and
// returns the answer's status code.
func githubPush(t *testing.T, server, secret, sha string, tamper func(body []byte) []byte) int {
	t.Helper()
	body := fmt.Appendf(nil, `{"ref":"refs/heads/main","after":%q,"repository":{"full_name":"team/deploy"},"pusher":{"name":"ana"}}`, sha)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	if tamper != nil {
		body = tamper(body)
	}
	req, err := http.NewRequest(http.MethodPost, server+"/v1/hooks/git", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958")
	if secret != "" {
		req.Header.Set("X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestWebhookTriggersSync runs the controller on a git:// server with an
// hour's poll interval: a correctly signed GitHub push notification gets
// the pushed commit applied at once, and wrongly signed ones are refused
// and change nothing.
func TestWebhookTriggersSync(t *testing.T) {
	daemon := gittest.StartGitDaemon(t, "")
	bare := filepath.Join(daemon.Root, "deploy.git")
	work := gittest.NewRepo(t, "", "work")
	first := work.CommitFiles("start", map[string]string{"cm.yaml": configMap(0)})
	work.Git("clone", "-q", "--bare", work.Dir, bare)
	work.Git("remote", "add", "origin", bare)
	const secret = "hook-s3cret"
	secretFile := filepath.Join(t.TempDir(), "webhook-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var o controllerOptions
	o.src.URL, o.src.Branch = daemon.URL("deploy.git"), "main"
	o.webhookSecretFile, o.interval = secretFile, time.Hour
	server := startControllerWith(t, o)
	c, err := client.New(server)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	eventually(t, "first commit applied", func() string {
		st, err := c.Status(ctx, client.Query{})
		if err != nil {
			return err.Error()
		}
		if st.Applied == nil || st.Applied.SHA != first {
			return fmt.Sprintf("applied %+v, want %s", st.Applied, first)
		}
		return ""
	})

	second := work.CommitFiles("change", map[string]string{"cm.yaml": configMap(1)})
	work.Git("push", "-q", "origin", "main")

	before, err := c.Status(ctx, client.Query{})
	if err != nil {
		t.Fatal(err)
	}
	refused := []struct {
		name   string
		secret string
		tamper func([]byte) []byte
	}{
		{"signed with another secret", "not-the-secret", nil},
		{"unsigned", "", nil},
		{"body changed after signing", secret, func(b []byte) []byte { return bytes.Replace(b, []byte("ana"), []byte("eve"), 1) }},
	}
	for _, r := range refused {
		if code := githubPush(t, server, r.secret, second, r.tamper); code != http.StatusUnauthorized && code != http.StatusForbidden {
			t.Errorf("%s: webhook answered %d, want 401 or 403", r.name, code)
		}
	}
	// No sync may follow: watch the status for a while with blocking
	// queries (a triggered sync takes well under a second on loopback).
	idx := before.Index
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		st, err := c.Status(ctx, client.Query{Index: idx, Wait: time.Until(deadline)})
		if err != nil {
			t.Fatal(err)
		}
		if st.Applied == nil || st.Applied.SHA != first || len(st.Recent) != len(before.Recent) ||
			!st.Sync.LastAttempt.Equal(before.Sync.LastAttempt) || st.Sync.ObservedSHA != before.Sync.ObservedSHA {
			t.Fatalf("refused webhook calls led to a sync: applied %+v, sync %+v", st.Applied, st.Sync)
		}
		idx = st.Index
	}

	start := time.Now()
	if code := githubPush(t, server, secret, second, nil); code != http.StatusAccepted {
		t.Fatalf("signed webhook answered %d, want 202", code)
	}
	for {
		st, err := c.Status(ctx, client.Query{Index: idx, Wait: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if st.Applied != nil && st.Applied.SHA == second {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("commit %s not applied 10s after the webhook call (poll interval 1h); status: %+v", second[:12], st.Sync)
		}
		idx = st.Index
	}
	t.Logf("applied %v after the webhook call", time.Since(start).Round(time.Millisecond))
}
