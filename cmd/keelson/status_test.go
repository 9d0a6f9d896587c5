package main

import (
	"strings"
	"testing"
	"time"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/store"
)

func TestPrintStatusLastFailed(t *testing.T) {
	now := time.Date(2024, 5, 2, 10, 0, 0, 0, time.UTC)
	rev := func(id uint64, sha string, status store.RevisionStatus, errs ...string) *store.Revision {
		r := &store.Revision{ID: id, SHA: sha, Status: status, Author: "Ana", Message: "commit " + sha, Time: now.Add(-time.Minute), AppliedAt: now.Add(-time.Minute)}
		for _, e := range errs {
			r.Errors = append(r.Errors, manifest.Issue{Severity: manifest.SeverityError, File: "bad.yaml", Line: 8, Message: e})
		}
		return r
	}
	const older = "Last failed commit (before the applied one): "
	tests := []struct {
		name    string
		st      api.Status
		want    []string
		notWant []string
	}{
		{
			name:    "nothing failed",
			st:      api.Status{Applied: rev(1, "good", store.RevisionApplied)},
			want:    []string{"Applied:  good "},
			notWant: []string{"Rejected:", older},
		},
		{
			name: "rejected after the applied commit",
			st:   api.Status{Applied: rev(1, "good", store.RevisionApplied), LastFailed: rev(2, "bad", store.RevisionFailed, "boom")},
			want: []string{
				"Applied:  good ",
				"Rejected: bad \"commit bad\" by Ana, 1m ago\n",
				"1 error(s); the applied commit keeps running:\n",
				"          bad.yaml:8: boom\n",
			},
			notWant: []string{older},
		},
		{
			name: "rejected before the applied commit",
			st:   api.Status{Applied: rev(3, "fixed", store.RevisionApplied), LastFailed: rev(2, "bad", store.RevisionFailed, "boom", "bang")},
			want: []string{
				"Applied:  fixed ",
				older + "bad \"commit bad\" by Ana, 1m ago\n",
				"          2 error(s):\n",
				"          bad.yaml:8: boom\n",
				"          bad.yaml:8: bang\n",
			},
			notWant: []string{"Rejected:", "keeps running"},
		},
		{
			name:    "rejected with nothing applied",
			st:      api.Status{LastFailed: rev(1, "bad", store.RevisionFailed, "boom")},
			want:    []string{"Applied:  nothing yet\n", "Rejected: bad ", "          bad.yaml:8: boom\n"},
			notWant: []string{older},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printStatus(&b, &tt.st, now)
			out := b.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(out, w) {
					t.Errorf("output has %q:\n%s", w, out)
				}
			}
		})
	}
}
