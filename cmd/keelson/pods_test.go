package main

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keelson/keelson/apiserver/api"
)

func TestPodSummaryInitContainers(t *testing.T) {
	always := corev1.ContainerRestartPolicyAlways
	spec := corev1.PodSpec{
		InitContainers: []corev1.Container{{Name: "a"}, {Name: "side", RestartPolicy: &always}, {Name: "b"}},
		Containers:     []corev1.Container{{Name: "app"}},
	}
	done := corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}
	run := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	wait := func(r string) corev1.ContainerState {
		return corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: r}}
	}
	started := true
	tests := []struct {
		name       string
		phase      corev1.PodPhase
		init, app  []corev1.ContainerStatus
		wantStatus string
		wantReady  string
		wantRst    int32
	}{
		{
			name:       "first init container running",
			phase:      corev1.PodPending,
			init:       []corev1.ContainerStatus{{Name: "a", State: run}, {Name: "side", State: wait("PodInitializing")}, {Name: "b", State: wait("PodInitializing")}},
			app:        []corev1.ContainerStatus{{Name: "app", State: wait("PodInitializing")}},
			wantStatus: "Init:0/3", wantReady: "0/2",
		},
		{
			name:       "sidecar started, second init running",
			phase:      corev1.PodPending,
			init:       []corev1.ContainerStatus{{Name: "a", State: done}, {Name: "side", State: run, Started: &started, Ready: true}, {Name: "b", State: run}},
			app:        []corev1.ContainerStatus{{Name: "app", State: wait("PodInitializing")}},
			wantStatus: "Init:2/3", wantReady: "1/2",
		},
		{
			name:       "init crash loop",
			phase:      corev1.PodPending,
			init:       []corev1.ContainerStatus{{Name: "a", State: wait("CrashLoopBackOff"), RestartCount: 2}},
			app:        []corev1.ContainerStatus{{Name: "app", State: wait("PodInitializing")}},
			wantStatus: "Init:CrashLoopBackOff", wantReady: "0/2", wantRst: 2,
		},
		{
			name:       "init failed",
			phase:      corev1.PodFailed,
			init:       []corev1.ContainerStatus{{Name: "a", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Error", ExitCode: 2}}}},
			app:        []corev1.ContainerStatus{{Name: "app", State: wait("PodInitializing")}},
			wantStatus: "Init:Error", wantReady: "0/2",
		},
		{
			name:       "running",
			phase:      corev1.PodRunning,
			init:       []corev1.ContainerStatus{{Name: "a", State: done}, {Name: "side", State: run, Started: &started, Ready: true}, {Name: "b", State: done}},
			app:        []corev1.ContainerStatus{{Name: "app", State: run, Ready: true, RestartCount: 1}},
			wantStatus: "Running", wantReady: "2/2", wantRst: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: spec, Status: corev1.PodStatus{Phase: tt.phase, InitContainerStatuses: tt.init, ContainerStatuses: tt.app}}
			status, ready, restarts := PodSummary(pod)
			if status != tt.wantStatus || ready != tt.wantReady || restarts != tt.wantRst {
				t.Errorf("PodSummary = %q %q %d, want %q %q %d", status, ready, restarts, tt.wantStatus, tt.wantReady, tt.wantRst)
			}
		})
	}
}

// TestParkedPodShown: get pods says Parked and describe says until when and
// whose delay, unless the pod is terminating.
func TestParkedPodShown(t *testing.T) {
	run := corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}
	parked := map[string]string{api.AnnotationParkedUntil: "2026-01-01T00:01:00Z", api.AnnotationParkedBy: "Deployment/shop/web"}
	deleted := metav1.Now()
	for _, tt := range []struct {
		name       string
		meta       metav1.ObjectMeta
		wantStatus string
		wantLine   string
	}{
		{name: "running", wantStatus: "Running"},
		{name: "parked", meta: metav1.ObjectMeta{Annotations: parked}, wantStatus: "Parked",
			wantLine: "Parked:     until Thu, 01 Jan 2026 00:01:00 +0000 (scale-down delay of Deployment web): running, out of its services; a revert takes it back"},
		{name: "parked, terminating", meta: metav1.ObjectMeta{Annotations: parked, DeletionTimestamp: &deleted}, wantStatus: "Terminating"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: tt.meta, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web"}}},
				Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "web", State: run, Ready: true}}}}
			if status, _, _ := PodSummary(pod); status != tt.wantStatus {
				t.Errorf("status %q, want %q", status, tt.wantStatus)
			}
			if got := parkedLine(pod); got != tt.wantLine {
				t.Errorf("describe line\n got %q\nwant %q", got, tt.wantLine)
			}
		})
	}
}
