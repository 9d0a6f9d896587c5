package nodeagent

import (
	"maps"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/internal/podrefs"
)

// configStore holds the latest ConfigMaps and Secrets the node's source
// gave, by namespace/name. The agent replaces them on each desired set;
// pod workers read them when they start containers. Objects in it are
// never changed after they are stored (readers may keep them).
type configStore struct {
	mu      sync.RWMutex
	maps    map[string]*corev1.ConfigMap
	secrets map[string]*corev1.Secret
}

// configRef names a ConfigMap or Secret.
type configRef struct {
	secret          bool
	namespace, name string
}

// set replaces the whole content and returns the refs that were added,
// changed or removed.
func (s *configStore) set(cms []*corev1.ConfigMap, secrets []*corev1.Secret) map[configRef]bool {
	newMaps := make(map[string]*corev1.ConfigMap, len(cms))
	for _, cm := range cms {
		cm = cm.DeepCopy()
		if cm.Namespace == "" {
			cm.Namespace = "default"
		}
		newMaps[cm.Namespace+"/"+cm.Name] = cm
	}
	newSecrets := make(map[string]*corev1.Secret, len(secrets))
	for _, sec := range secrets {
		sec = sec.DeepCopy()
		if sec.Namespace == "" {
			sec.Namespace = "default"
		}
		// stringData is write-only in the API: it is merged into data.
		if len(sec.StringData) > 0 {
			if sec.Data == nil {
				sec.Data = map[string][]byte{}
			}
			for k, v := range sec.StringData {
				sec.Data[k] = []byte(v)
			}
			sec.StringData = nil
		}
		newSecrets[sec.Namespace+"/"+sec.Name] = sec
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := map[configRef]bool{}
	for k, cm := range newMaps {
		old := s.maps[k]
		if old == nil || !maps.Equal(old.Data, cm.Data) || !maps.EqualFunc(old.BinaryData, cm.BinaryData, bytesEqual) {
			changed[configRef{false, cm.Namespace, cm.Name}] = true
		}
	}
	for k, old := range s.maps {
		if newMaps[k] == nil {
			changed[configRef{false, old.Namespace, old.Name}] = true
		}
	}
	for k, sec := range newSecrets {
		old := s.secrets[k]
		if old == nil || !maps.EqualFunc(old.Data, sec.Data, bytesEqual) {
			changed[configRef{true, sec.Namespace, sec.Name}] = true
		}
	}
	for k, old := range s.secrets {
		if newSecrets[k] == nil {
			changed[configRef{true, old.Namespace, old.Name}] = true
		}
	}
	s.maps, s.secrets = newMaps, newSecrets
	return changed
}

func bytesEqual(a, b []byte) bool { return string(a) == string(b) }

// configMap is the ConfigMap namespace/name, or nil. s may be nil.
func (s *configStore) configMap(namespace, name string) *corev1.ConfigMap {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.maps[namespace+"/"+name]
}

// secret is the Secret namespace/name (stringData merged into data), or nil.
func (s *configStore) secret(namespace, name string) *corev1.Secret {
	if s == nil {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.secrets[namespace+"/"+name]
}

// podConfigRefs are the ConfigMaps and Secrets a pod refers to, in its
// volumes, its containers' environment and its imagePullSecrets.
func podConfigRefs(pod *corev1.Pod) map[configRef]bool {
	refs := map[configRef]bool{}
	podrefs.Walk(pod,
		func(name string) { refs[configRef{false, pod.Namespace, name}] = true },
		func(name string) { refs[configRef{true, pod.Namespace, name}] = true })
	return refs
}

// usesAny reports whether the pod refers to any of refs.
func usesAny(pod *corev1.Pod, refs map[configRef]bool) bool {
	for r := range podConfigRefs(pod) {
		if refs[r] {
			return true
		}
	}
	return false
}
