package gitsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func sign(secret, body string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func TestWebhookHandler(t *testing.T) {
	const secret = "hook-s3cret"
	body := `{"ref":"refs/heads/main"}`
	tests := []struct {
		name        string
		secret      string
		method      string
		headers     map[string]string
		body        string
		wantStatus  int
		wantTrigger bool
	}{
		{"github push", secret, "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(secret, body)}, body, 202, true},
		{"github ping", secret, "POST", map[string]string{"X-GitHub-Event": "ping", "X-Hub-Signature-256": sign(secret, body)}, body, 200, false},
		{"github other event", secret, "POST", map[string]string{"X-GitHub-Event": "issues", "X-Hub-Signature-256": sign(secret, body)}, body, 200, false},
		{"github bad signature", secret, "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign("wrong", body)}, body, 401, false},
		{"github missing signature", secret, "POST", map[string]string{"X-GitHub-Event": "push"}, body, 401, false},
		{"github sha1 only", secret, "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature": "sha1=abc"}, body, 401, false},
		{"github body changed", secret, "POST", map[string]string{"X-GitHub-Event": "push", "X-Hub-Signature-256": sign(secret, body)}, body + " ", 401, false},
		{"gitlab push", secret, "POST", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret}, body, 202, true},
		{"gitlab tag push", secret, "POST", map[string]string{"X-Gitlab-Event": "Tag Push Hook", "X-Gitlab-Token": secret}, body, 202, true},
		{"gitlab other event", secret, "POST", map[string]string{"X-Gitlab-Event": "Issue Hook", "X-Gitlab-Token": secret}, body, 200, false},
		{"gitlab wrong token", secret, "POST", map[string]string{"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"}, body, 401, false},
		{"gitlab missing token", secret, "POST", map[string]string{"X-Gitlab-Event": "Push Hook"}, body, 401, false},
		{"generic signed", secret, "POST", map[string]string{"X-Keelson-Signature": sign(secret, "anything")}, "anything", 202, true},
		{"generic empty body signed", secret, "POST", map[string]string{"X-Keelson-Signature": sign(secret, "")}, "", 202, true},
		{"generic bad signature", secret, "POST", map[string]string{"X-Keelson-Signature": sign(secret, "other")}, "anything", 401, false},
		{"generic not hex", secret, "POST", map[string]string{"X-Keelson-Signature": "sha256=zz"}, "anything", 401, false},
		{"generic unsigned", secret, "POST", nil, "anything", 401, false},
		{"no secret: unsigned generic", "", "POST", nil, "anything", 202, true},
		{"no secret: github push", "", "POST", map[string]string{"X-GitHub-Event": "push"}, body, 202, true},
		{"GET", secret, "GET", nil, "", 405, false},
		{"too large", "", "POST", nil, strings.Repeat("x", 1<<20+1), 413, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var triggered atomic.Int32
			log, _ := testLogger(t)
			h := WebhookHandler([]byte(tt.secret), func() { triggered.Add(1) }, log)
			req := httptest.NewRequest(tt.method, "/v1/hooks/git", strings.NewReader(tt.body))
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d (%s)", rec.Code, tt.wantStatus, rec.Body)
			}
			if got := triggered.Load() > 0; got != tt.wantTrigger {
				t.Errorf("triggered = %v, want %v", got, tt.wantTrigger)
			}
			if tt.wantStatus == http.StatusMethodNotAllowed && rec.Header().Get("Allow") != "POST" {
				t.Errorf("Allow = %q, want POST", rec.Header().Get("Allow"))
			}
		})
	}
}
