package apiserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWriteJSONIndentsForPeople(t *testing.T) {
	for _, tc := range []struct {
		url, agent string
		indented   bool
	}{
		{"/v1/pods", "Go-http-client/1.1", false}, // keelson and agents
		{"/v1/pods", "curl/7.88.1", true},
		{"/v1/pods", "Wget/1.21.3", true},
		{"/v1/pods?pretty=true", "Go-http-client/1.1", true},
		{"/v1/pods?pretty=1", "", true},
		{"/v1/pods?pretty=false", "curl/7.88.1", false},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.url, nil)
		r.Header.Set("User-Agent", tc.agent)
		w := httptest.NewRecorder()
		writeJSON(w, r, http.StatusOK, map[string][]string{"items": {"a"}})
		body := w.Body.String()
		want := `{"items":["a"]}` + "\n"
		if tc.indented {
			want = "{\n  \"items\": [\n    \"a\"\n  ]\n}\n"
		}
		if body != want {
			t.Errorf("%s from %q: %q, want %q", tc.url, tc.agent, body, want)
		}
		if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q", tc.url, ct)
		}
	}
}
