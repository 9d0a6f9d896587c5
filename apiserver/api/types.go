// Package api holds the wire types of Keelson's HTTP API, shared by the
// server and its clients. It has no behaviour.
package api

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/keelson/keelson/store"
)

// IndexHeader carries the store index an answer reflects; pass it back as
// ?index=N&wait=30s to block until something newer exists.
const IndexHeader = "X-Keelson-Index"

// Status is the answer of GET /v1/status.
type Status struct {
	Sync *store.SyncState `json:"sync,omitempty"`
	// Applied is the revision the store holds.
	Applied *store.Revision `json:"applied,omitempty"`
	// LastFailed is the newest rejected revision, if any, whether it came
	// after Applied (it is what Git has now, and was refused) or before it
	// (a later commit was applied): compare their IDs.
	LastFailed *store.Revision `json:"lastFailed,omitempty"`
	// RolledBack are the Deployments the controller rolled back on its own
	// (--auto-rollback): they run an older template than Git has.
	RolledBack []RolledBack `json:"rolledBack,omitempty"`
	// Recent are the newest revisions (applied and rejected), newest
	// first, with what became of their rollouts.
	Recent  []*store.Revision `json:"recent,omitempty"`
	Objects int               `json:"objects"`
	// Nodes, Pods and PodsUnscheduled count the cluster's observed state.
	Nodes           int    `json:"nodes"`
	Pods            int    `json:"pods"`
	PodsUnscheduled int    `json:"podsUnscheduled"`
	Index           uint64 `json:"index"`
}

// Object is one desired object with where it came from.
type Object struct {
	Key         string          `json:"key"`
	Kind        string          `json:"kind"`
	Namespace   string          `json:"namespace,omitempty"`
	Name        string          `json:"name"`
	File        string          `json:"file"`
	Line        int             `json:"line"`
	Revision    string          `json:"revision"`
	CreateIndex uint64          `json:"createIndex"`
	ModifyIndex uint64          `json:"modifyIndex"`
	Object      json.RawMessage `json:"object"`
}

// ObjectList is the answer of GET /v1/objects.
type ObjectList struct {
	Index uint64   `json:"index"`
	Items []Object `json:"items"`
	// Applied is false until the controller holds an applied revision (it
	// has just started): an empty list then means "not known yet", and
	// agents keep what they have.
	Applied bool `json:"applied"`
}

// RevisionList is the answer of GET /v1/revisions.
type RevisionList struct {
	Index uint64            `json:"index"`
	Items []*store.Revision `json:"items"`
}

// EventList is the answer of GET /v1/events.
type EventList struct {
	Index uint64         `json:"index"`
	Items []*store.Event `json:"items"`
}

// Error is the body of every non-2xx answer.
type Error struct {
	Error string `json:"error"`
}

// PodList is the answer of GET /v1/pods: pods as nodes report them, with status.
type PodList struct {
	Index uint64       `json:"index"`
	Items []corev1.Pod `json:"items"`
}

// NodeRegistration is what an agent sends to join: its node (name,
// capacity, allocatable, addresses, labels, taints) and where its own API
// listens (for logs and exec).
type NodeRegistration struct {
	Node corev1.Node `json:"node"`
	API  string      `json:"api"`
}

// NodeList is the answer of GET /v1/nodes.
type NodeList struct {
	Index uint64        `json:"index"`
	Items []corev1.Node `json:"items"`
}

// AgentTokenHeader carries an agent's token (as "Bearer TOKEN" in Authorization).
const AgentTokenHeader = "Authorization"

// Usage is what `keelson top` shows: CPU in millicores over a short
// window, memory in bytes.
type Usage struct {
	Node  string     `json:"node"`
	CPU   int64      `json:"cpuMillis"`
	Mem   int64      `json:"memoryBytes"`
	Cores int64      `json:"cores"`
	Total int64      `json:"memoryTotalBytes"`
	Pods  []PodUsage `json:"pods"`
}

// PodUsage is one pod's usage, summed over its containers.
type PodUsage struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	CPU       int64  `json:"cpuMillis"`
	Mem       int64  `json:"memoryBytes"`
}

// UsageList is the answer of GET /v1/usage: one entry per node.
type UsageList struct {
	Items []Usage `json:"items"`
}

// EndpointSliceList is the answer of GET /v1/endpointslices: the slices the
// endpoints controller keeps for Services with a selector.
type EndpointSliceList struct {
	Index uint64                      `json:"index"`
	Items []discoveryv1.EndpointSlice `json:"items"`
}

// ServiceEndpoints is a Service as the controller completed it (cluster
// address, node ports, LoadBalancer address) with its endpoint slices.
type ServiceEndpoints struct {
	Service corev1.Service              `json:"service"`
	Slices  []discoveryv1.EndpointSlice `json:"slices"`
}

// ServiceList is the answer of GET /v1/services: what agents program into
// their load balancers and DNS servers.
type ServiceList struct {
	Index uint64             `json:"index"`
	Items []ServiceEndpoints `json:"items"`
	// Applied is false until the controller has applied a revision and
	// computed the endpoints with its agents' reports in (it has just
	// started): agents keep what they have programmed until then.
	Applied bool `json:"applied"`
}

// RolledBack is a Deployment that runs an older template than Git has,
// because its rollout failed and automatic rollback was on.
type RolledBack struct {
	Object  string `json:"object"`  // Deployment/namespace/name
	Running string `json:"running"` // the ReplicaSet it runs
	Failed  string `json:"failed"`  // the ReplicaSet of Git's template
	Reason  string `json:"reason"`
}

// Annotations on a Deployment's failed ReplicaSet when it was rolled back:
// the Deployment's hash as Git had it, the ReplicaSet it returned to, and why.
const (
	AnnotationRolledBackAt     = "keelson.dev/rolled-back-at"
	AnnotationRolledBackTo     = "keelson.dev/rolled-back-to"
	AnnotationRolledBackReason = "keelson.dev/rolled-back-reason"
)

// Annotations the API adds to a pod that a Deployment's scale-down delay
// parked (it runs, out of its services, until a revert takes it back or
// the delay ends): when the park ends (RFC 3339) and the Deployment
// (Kind/namespace/name). Agents, which ask for their node's pods, are not
// shown them.
const (
	AnnotationParkedUntil = "keelson.dev/parked-until"
	AnnotationParkedBy    = "keelson.dev/parked-by"
)
