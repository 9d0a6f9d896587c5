package manifest

import (
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	appsv1beta1 "k8s.io/api/apps/v1beta1"
	appsv1beta2 "k8s.io/api/apps/v1beta2"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	extensionsv1beta1 "k8s.io/api/extensions/v1beta1"
	networkingv1 "k8s.io/api/networking/v1"
	networkingv1beta1 "k8s.io/api/networking/v1beta1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// kindSpec describes how Keelson serves one kind.
type kindSpec struct {
	// served is the apiVersion objects of this kind are stored as.
	served string
	// namespaced is false for cluster-scoped kinds.
	namespaced bool
	// noEffect kinds are decoded, validated and stored, but Keelson does
	// not act on them yet.
	noEffect bool
}

// knownKinds lists, in a stable order, every kind Keelson accepts with the
// apiVersion it serves it as. It is a function rather than a variable so the
// package holds no global state.
func knownKinds() map[string]kindSpec {
	return map[string]kindSpec{
		"Namespace":             {served: "v1"},
		"Pod":                   {served: "v1", namespaced: true},
		"ReplicaSet":            {served: "apps/v1", namespaced: true},
		"Deployment":            {served: "apps/v1", namespaced: true},
		"DaemonSet":             {served: "apps/v1", namespaced: true},
		"StatefulSet":           {served: "apps/v1", namespaced: true},
		"Job":                   {served: "batch/v1", namespaced: true},
		"CronJob":               {served: "batch/v1", namespaced: true},
		"Service":               {served: "v1", namespaced: true},
		"Ingress":               {served: "networking.k8s.io/v1", namespaced: true},
		"IngressClass":          {served: "networking.k8s.io/v1"},
		"ConfigMap":             {served: "v1", namespaced: true},
		"Secret":                {served: "v1", namespaced: true},
		"PersistentVolumeClaim": {served: "v1", namespaced: true},
		"PersistentVolume":      {served: "v1"},
		"StorageClass":          {served: "storage.k8s.io/v1"},
		"ServiceAccount":        {served: "v1", namespaced: true},

		"Role":                    {served: "rbac.authorization.k8s.io/v1", namespaced: true, noEffect: true},
		"ClusterRole":             {served: "rbac.authorization.k8s.io/v1", noEffect: true},
		"RoleBinding":             {served: "rbac.authorization.k8s.io/v1", namespaced: true, noEffect: true},
		"ClusterRoleBinding":      {served: "rbac.authorization.k8s.io/v1", noEffect: true},
		"NetworkPolicy":           {served: "networking.k8s.io/v1", namespaced: true, noEffect: true},
		"PodDisruptionBudget":     {served: "policy/v1", namespaced: true, noEffect: true},
		"HorizontalPodAutoscaler": {served: "autoscaling/v2", namespaced: true, noEffect: true},
		"ResourceQuota":           {served: "v1", namespaced: true, noEffect: true},
		"LimitRange":              {served: "v1", namespaced: true, noEffect: true},
	}
}

// knownKindList is the sorted, comma-separated list of kinds, for messages.
func knownKindList() string {
	names := make([]string, 0, 26)
	for k := range knownKinds() {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// deprecatedVersions lists, per kind, the old apiVersions that are still
// accepted (and converted) with a warning.
func deprecatedVersions(kind string) []string {
	switch kind {
	case "Deployment", "DaemonSet", "ReplicaSet", "StatefulSet":
		var v []string
		if kind == "Deployment" || kind == "StatefulSet" {
			v = append(v, "apps/v1beta1")
		}
		v = append(v, "apps/v1beta2")
		if kind != "StatefulSet" {
			v = append(v, "extensions/v1beta1")
		}
		return v
	case "Ingress":
		return []string{"extensions/v1beta1", "networking.k8s.io/v1beta1"}
	case "HorizontalPodAutoscaler":
		return nil
	}
	return nil
}

// newTyped returns an empty typed object for apiVersion and kind, and
// whether the pair is an accepted but deprecated form that must be
// converted. It returns nil for a pair Keelson does not serve.
func newTyped(apiVersion, kind string) (obj runtime.Object, old bool) {
	switch apiVersion + " " + kind {
	case "v1 Namespace":
		return &corev1.Namespace{}, false
	case "v1 Pod":
		return &corev1.Pod{}, false
	case "apps/v1 ReplicaSet":
		return &appsv1.ReplicaSet{}, false
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, false
	case "apps/v1 DaemonSet":
		return &appsv1.DaemonSet{}, false
	case "apps/v1 StatefulSet":
		return &appsv1.StatefulSet{}, false
	case "batch/v1 Job":
		return &batchv1.Job{}, false
	case "batch/v1 CronJob":
		return &batchv1.CronJob{}, false
	case "v1 Service":
		return &corev1.Service{}, false
	case "networking.k8s.io/v1 Ingress":
		return &networkingv1.Ingress{}, false
	case "networking.k8s.io/v1 IngressClass":
		return &networkingv1.IngressClass{}, false
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, false
	case "v1 Secret":
		return &corev1.Secret{}, false
	case "v1 PersistentVolumeClaim":
		return &corev1.PersistentVolumeClaim{}, false
	case "v1 PersistentVolume":
		return &corev1.PersistentVolume{}, false
	case "storage.k8s.io/v1 StorageClass":
		return &storagev1.StorageClass{}, false
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, false
	case "rbac.authorization.k8s.io/v1 Role":
		return &rbacv1.Role{}, false
	case "rbac.authorization.k8s.io/v1 ClusterRole":
		return &rbacv1.ClusterRole{}, false
	case "rbac.authorization.k8s.io/v1 RoleBinding":
		return &rbacv1.RoleBinding{}, false
	case "rbac.authorization.k8s.io/v1 ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}, false
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, false
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, false
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, false
	case "autoscaling/v1 HorizontalPodAutoscaler":
		// Still served by Kubernetes; kept in its own version.
		return &autoscalingv1.HorizontalPodAutoscaler{}, false
	case "v1 ResourceQuota":
		return &corev1.ResourceQuota{}, false
	case "v1 LimitRange":
		return &corev1.LimitRange{}, false

	// Old workload forms, converted to apps/v1.
	case "apps/v1beta1 Deployment":
		return &appsv1beta1.Deployment{}, true
	case "apps/v1beta1 StatefulSet":
		return &appsv1beta1.StatefulSet{}, true
	case "apps/v1beta2 Deployment":
		return &appsv1beta2.Deployment{}, true
	case "apps/v1beta2 DaemonSet":
		return &appsv1beta2.DaemonSet{}, true
	case "apps/v1beta2 ReplicaSet":
		return &appsv1beta2.ReplicaSet{}, true
	case "apps/v1beta2 StatefulSet":
		return &appsv1beta2.StatefulSet{}, true
	case "extensions/v1beta1 Deployment":
		return &extensionsv1beta1.Deployment{}, true
	case "extensions/v1beta1 DaemonSet":
		return &extensionsv1beta1.DaemonSet{}, true
	case "extensions/v1beta1 ReplicaSet":
		return &extensionsv1beta1.ReplicaSet{}, true
	case "extensions/v1beta1 Ingress":
		return &extensionsv1beta1.Ingress{}, true
	case "networking.k8s.io/v1beta1 Ingress":
		return &networkingv1beta1.Ingress{}, true
	}
	return nil, false
}
