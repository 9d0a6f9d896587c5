package gitsync

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// maxWebhookBody bounds the body a webhook may send.
const maxWebhookBody = 1 << 20

// WebhookHandler serves POST /v1/hooks/git: a push notification from
// GitHub (X-GitHub-Event, signed with X-Hub-Signature-256), GitLab
// (X-Gitlab-Event, X-Gitlab-Token equal to the secret) or anything else
// (X-Keelson-Signature: sha256=<hex HMAC-SHA256 of the body>). The payload
// is not trusted for anything: a push only calls trigger, which syncs from
// the source. With a secret, a request without a valid signature gets 401
// and triggers nothing; with none, anyone who can reach the endpoint can
// cause a sync. Answers: 202 triggered, 200 ping or ignored event, 405 not
// POST, 413 body over 1 MiB.
func WebhookHandler(secret []byte, trigger func(), log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if len(secret) == 0 {
		log.Warn("git webhook has no secret: anyone who reaches it can trigger a sync")
	}
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "method not allowed: use POST", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, maxWebhookBody))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				http.Error(w, "body over 1 MiB", http.StatusRequestEntityTooLarge)
				return
			}
			http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
			return
		}

		kind, event, ok := "generic", "push", false
		h := req.Header
		switch {
		case h.Get("X-GitHub-Event") != "":
			kind, event = "github", h.Get("X-GitHub-Event")
			ok = validHMAC(secret, body, h.Get("X-Hub-Signature-256"))
		case h.Get("X-Gitlab-Event") != "" || h.Get("X-Gitlab-Token") != "":
			kind, event = "gitlab", h.Get("X-Gitlab-Event")
			ok = len(secret) == 0 || subtle.ConstantTimeCompare([]byte(h.Get("X-Gitlab-Token")), secret) == 1
		default:
			ok = validHMAC(secret, body, h.Get("X-Keelson-Signature"))
		}
		if !ok {
			log.Warn("git webhook: bad or missing signature", "kind", kind, "remote", req.RemoteAddr)
			http.Error(w, "bad or missing signature", http.StatusUnauthorized)
			return
		}
		switch {
		case kind == "github" && event == "ping":
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "pong\n")
			return
		case kind == "github" && event != "push",
			kind == "gitlab" && event != "" && event != "Push Hook" && event != "Tag Push Hook":
			log.Debug("git webhook: event ignored", "kind", kind, "event", event)
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, "ignored event "+event+"\n")
			return
		}
		log.Debug("git webhook: sync triggered", "kind", kind, "event", event)
		trigger()
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "sync triggered\n")
	})
}

// validHMAC reports whether sig is "sha256=<hex>" of the HMAC-SHA256 of body
// with secret; with no secret every request is valid.
func validHMAC(secret, body []byte, sig string) bool {
	if len(secret) == 0 {
		return true
	}
	hexSig, ok := strings.CutPrefix(sig, "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}
