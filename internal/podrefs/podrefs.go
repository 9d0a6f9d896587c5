// Package podrefs finds the ConfigMaps and Secrets a pod refers to: in its
// volumes (projected ones included), its containers' environment and its
// imagePullSecrets. The agent follows their changes with it; the API gives
// a node the Secrets of its own pods only.
package podrefs

import corev1 "k8s.io/api/core/v1"

// Walk calls configMap and secret with the name of each ConfigMap and
// Secret pod refers to (in pod's namespace), possibly more than once.
func Walk(pod *corev1.Pod, configMap, secret func(name string)) {
	for _, v := range pod.Spec.Volumes {
		switch {
		case v.ConfigMap != nil:
			configMap(v.ConfigMap.Name)
		case v.Secret != nil:
			secret(v.Secret.SecretName)
		case v.Projected != nil:
			for _, src := range v.Projected.Sources {
				if src.ConfigMap != nil {
					configMap(src.ConfigMap.Name)
				}
				if src.Secret != nil {
					secret(src.Secret.Name)
				}
			}
		}
	}
	for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range cs {
			for _, ef := range c.EnvFrom {
				if ef.ConfigMapRef != nil {
					configMap(ef.ConfigMapRef.Name)
				}
				if ef.SecretRef != nil {
					secret(ef.SecretRef.Name)
				}
			}
			for _, e := range c.Env {
				if e.ValueFrom == nil {
					continue
				}
				if e.ValueFrom.ConfigMapKeyRef != nil {
					configMap(e.ValueFrom.ConfigMapKeyRef.Name)
				}
				if e.ValueFrom.SecretKeyRef != nil {
					secret(e.ValueFrom.SecretKeyRef.Name)
				}
			}
		}
	}
	for _, s := range pod.Spec.ImagePullSecrets {
		secret(s.Name)
	}
}
