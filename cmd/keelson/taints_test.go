package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
)

func TestParseTaints(t *testing.T) {
	tests := []struct {
		in      []string
		want    []corev1.Taint
		wantErr string
	}{
		{in: nil},
		{in: []string{"dedicated=gpu:NoSchedule", "spot:PreferNoSchedule"}, want: []corev1.Taint{
			{Key: "dedicated", Value: "gpu", Effect: corev1.TaintEffectNoSchedule},
			{Key: "spot", Effect: corev1.TaintEffectPreferNoSchedule},
		}},
		{in: []string{"example.com/maintenance=true:NoExecute"}, want: []corev1.Taint{
			{Key: "example.com/maintenance", Value: "true", Effect: corev1.TaintEffectNoExecute},
		}},
		{in: []string{"dedicated=gpu"}, wantErr: "want key=value:Effect"},
		{in: []string{"=gpu:NoSchedule"}, wantErr: "want key=value:Effect"},
		{in: []string{"dedicated=gpu:Never"}, wantErr: `effect "Never"`},
		{in: []string{"bad key=x:NoSchedule"}, wantErr: "key:"},
		{in: []string{"k=bad value:NoSchedule"}, wantErr: "value:"},
	}
	for _, tt := range tests {
		got, err := parseTaints(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseTaints(%q) error %v, want one with %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !cmp.Equal(got, tt.want) {
			t.Errorf("parseTaints(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
