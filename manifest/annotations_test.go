package manifest

import (
	"testing"
	"time"
)

func TestScaleDownDelay(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "30s", want: 30 * time.Second},
		{in: "1m30s", want: 90 * time.Second},
		{in: "0s", want: 0},
		{in: "0", want: 0},
		{in: "30", wantErr: "must be a duration such as 30s or 5m"},
		{in: "", wantErr: "must be a duration such as 30s or 5m"},
		{in: "soon", wantErr: "must be a duration such as 30s or 5m"},
		{in: "-1s", wantErr: "must not be negative"},
	} {
		got, err := ScaleDownDelay(tc.in)
		switch {
		case tc.wantErr != "" && (err == nil || err.Error() != tc.wantErr):
			t.Errorf("ScaleDownDelay(%q) = %v, %v; want error %q", tc.in, got, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || got != tc.want):
			t.Errorf("ScaleDownDelay(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
