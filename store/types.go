package store

import (
	"math"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/keelson/keelson/manifest"
)

// Object is a desired object of the applied revision. Rows are immutable once
// inserted: copy, change, and upsert in a new transaction.
type Object struct {
	// Key is "Kind/namespace/name" (or "Kind/name" when cluster-scoped).
	Key        string
	APIVersion string
	Kind       string
	Namespace  string
	Name       string
	Labels     map[string]string
	// OwnerKey is the Key of the owning object for objects that controllers
	// create; empty for objects that come from Git.
	OwnerKey string
	// Obj is the typed Kubernetes object.
	Obj runtime.Object
	// File and Line say where the object is declared in the repository.
	File string
	Line int
	// Hash is the digest of the desired state; equal means unchanged.
	Hash string
	// Revision is the commit that last changed the object.
	Revision string
	// Status is what the controllers observed of the object (for instance
	// *appsv1.DeploymentStatus); nil for kinds without one. It lives as long
	// as the object's desired state does not change.
	Status any

	CreateIndex uint64
	ModifyIndex uint64
}

// RevisionStatus is the outcome of applying a revision.
type RevisionStatus string

const (
	RevisionApplied RevisionStatus = "Applied"
	RevisionFailed  RevisionStatus = "Failed"
)

// Revision records one attempt to apply a commit: the sync history.
type Revision struct {
	ID      uint64         `json:"id"`
	SHA     string         `json:"sha"`
	Ref     string         `json:"ref,omitempty"`
	Author  string         `json:"author"`
	Email   string         `json:"email,omitempty"`
	Message string         `json:"message"`
	Time    time.Time      `json:"time"`
	Status  RevisionStatus `json:"status"`
	// FetchedAt is when the commit was seen; AppliedAt when the store
	// holds it (or when it was rejected).
	FetchedAt time.Time `json:"fetchedAt"`
	AppliedAt time.Time `json:"appliedAt"`
	// LoadDuration is the time to decode and validate the revision.
	LoadDuration time.Duration `json:"loadDuration"`
	// FilesDecoded is how many files were decoded; unchanged ones are not.
	FilesDecoded int              `json:"filesDecoded"`
	Objects      int              `json:"objects"`
	Added        int              `json:"added"`
	Changed      int              `json:"changed"`
	Removed      int              `json:"removed"`
	Errors       []manifest.Issue `json:"errors,omitempty"`
	Warnings     []manifest.Issue `json:"warnings,omitempty"`
	// Rollouts are the workloads (Deployments, DaemonSets, StatefulSets)
	// the commit added or changed, and what became of each.
	Rollouts []Rollout `json:"rollouts,omitempty"`
	// Health sums up the rollouts: Progressing while any is, Degraded if
	// any failed, Healthy when all completed; Superseded or RolledBack
	// when later commits replaced all of them before that; empty when the
	// commit changed no workload.
	Health RolloutOutcome `json:"health,omitempty"`

	CreateIndex uint64 `json:"createIndex"`
}

// RolloutOutcome is what became of a commit's change to a workload.
type RolloutOutcome string

const (
	RolloutProgressing RolloutOutcome = "Progressing"
	// RolloutHealthy: every replica runs the commit's template and is available.
	RolloutHealthy RolloutOutcome = "Healthy"
	// RolloutDegraded: the rollout stopped progressing (its deadline passed).
	RolloutDegraded RolloutOutcome = "Degraded"
	// RolloutSuperseded: a later commit changed the object before the
	// rollout finished.
	RolloutSuperseded RolloutOutcome = "Superseded"
	// RolloutRolledBack: a later commit brought the template back to what
	// it was before this commit (a git revert).
	RolloutRolledBack RolloutOutcome = "RolledBack"
)

// Final reports whether the outcome will not change any more.
func (o RolloutOutcome) Final() bool { return o != RolloutProgressing && o != "" }

// Rollout is one workload a commit changed, followed from commit to running.
type Rollout struct {
	Object string   `json:"object"` // Kind/namespace/name
	Images []string `json:"images,omitempty"`
	// Hash is the object's desired-state hash in the commit; TemplateHash
	// and FromTemplate are its pod template's hash in the commit and
	// before it (empty when the commit added the object).
	Hash         string         `json:"hash"`
	TemplateHash string         `json:"templateHash"`
	FromTemplate string         `json:"fromTemplate,omitempty"`
	Outcome      RolloutOutcome `json:"outcome"`
	Reason       string         `json:"reason,omitempty"`
	// When every pod of the commit's template was bound to a node, running,
	// and the rollout complete (all available); zero until then.
	Scheduled time.Time `json:"scheduled,omitzero"`
	Started   time.Time `json:"started,omitzero"`
	Ready     time.Time `json:"ready,omitzero"`
	// Finished is when the outcome became final.
	Finished time.Time `json:"finished,omitzero"`
}

// SyncState is the state of the Git source: whether the last fetch
// worked. There is one row, named "source".
type SyncState struct {
	Name string `json:"-"`
	// Source is the URL (never with credentials), ref and path followed.
	Source string `json:"source"`
	Ref    string `json:"ref"`
	Path   string `json:"path,omitempty"`
	// State is "Synced", "Failed" (the last revision was rejected) or
	// "Error" (the source could not be fetched); "Pending" before the first sync.
	State        string    `json:"state"`
	LastError    string    `json:"lastError,omitempty"`
	LastAttempt  time.Time `json:"lastAttempt"`
	LastSuccess  time.Time `json:"lastSuccess"`
	ObservedSHA  string    `json:"observedSHA,omitempty"`
	ModifyIndex  uint64    `json:"modifyIndex"`
	FailingSince time.Time `json:"failingSince,omitzero"`
	// WarmSince is when this controller's controllers first ran with an
	// applied revision and every agent's report in (after the start-up
	// grace): from then on its endpoints are whole, and agents may program
	// what it serves. Zero in a controller that has just started.
	WarmSince     time.Time `json:"warmSince,omitzero"`
	ConsecutiveKO int       `json:"consecutiveFailures,omitempty"`
}

// Node is a node as its agent registered it.
type Node struct {
	Name string
	Node *corev1.Node
	// API is the agent's API address, for logs and exec.
	API string
	// LeaseRenewed is when the agent registered, or its node last became
	// Ready; the renewals in between are in TableLeases (see leases.go).
	LeaseRenewed time.Time
	// ServicesIndex is the newest store index whose Services and endpoints
	// the node's agent has programmed into its load balancer; 0 when the
	// node does not program services (simulated nodes, --service-lb=false).
	ServicesIndex uint64
	CreateIndex   uint64
	ModifyIndex   uint64
}

// Pod is a pod the controllers want and the agents report on, in the
// compact form the store keeps (see pod.go): at 100,000 pods, a row holds
// what is the pod's own and shares the rest. Rows are immutable once
// inserted: copy, change, and upsert in a new transaction.
type Pod struct {
	Key       string // namespace/name
	Namespace string
	Name      string
	NodeName  string
	OwnerKey  string
	Phase     string
	// Base is the pod as it was made: type, metadata (labels, annotations,
	// owner references) and spec. The pods made from one template share one
	// Base, which no one changes (copy it to make another). Its name,
	// namespace, UID, creation time, deletion, status, and its spec.nodeName
	// when NodeName is set, are not the pod's: the row's fields are.
	Base    *corev1.Pod
	UID     types.UID
	Created Stamp
	// PodIP, Ready, ReadySince and Restarts are what the controllers read
	// of the status on every pass; the whole status is in status (see
	// SetStatus and Status).
	PodIP string
	// ReadySince is the lastTransitionTime of the pod's Ready condition
	// (zero without one); Ready is whether the condition is True.
	ReadySince Stamp
	// Restarts is the most restarts of one of its containers. (It and Ready
	// share a word: a row is 208 bytes.)
	Restarts int32
	Ready    bool
	status   string
	// Termination is when and in which transaction the controller decided
	// to delete the pod; nil while it is not terminating (a pointer, as few
	// pods ever are: 24 bytes fewer a row). A terminating pod has left its
	// services' backends (it takes no new connections) and keeps running
	// until every node has programmed that, or a short time has passed;
	// then its row goes and its agent stops it (see reconciler). It is
	// served with its deletionTimestamp set.
	Termination *Termination
	CreateIndex uint64
	ModifyIndex uint64
}

// Termination is a pod's deletion by the controller.
type Termination struct {
	Since time.Time
	// Index is the store index of the transaction that made the pod
	// terminating: nodes whose services index has reached it no longer send
	// it new connections.
	Index uint64
}

// Terminating reports whether the pod is on its way out.
func (p *Pod) Terminating() bool { return p.Termination != nil }

// TerminatingSince is when the pod began terminating; zero when it is not.
func (p *Pod) TerminatingSince() time.Time {
	if p.Termination == nil {
		return time.Time{}
	}
	return p.Termination.Since
}

// Stamp is a time to the nanosecond in 8 bytes, where a time.Time takes 24:
// the rows of the pods table hold two. The zero Stamp is the zero time; a
// time before 1678 or after 2262 (which only a broken or hostile agent would
// report) is StampBeyond, which reads as the zero time: the row's status
// keeps such a time to the second.
type Stamp int64

// StampBeyond is the Stamp of a time that Stamp cannot hold.
const StampBeyond Stamp = math.MinInt64

var (
	stampMin = time.Unix(0, math.MinInt64+1)
	stampMax = time.Unix(0, math.MaxInt64)
)

// StampOf is t as a Stamp. (The Unix epoch itself is a nanosecond after
// it: 0 is the zero time.)
func StampOf(t time.Time) Stamp {
	switch {
	case t.IsZero():
		return 0
	case t.Before(stampMin) || t.After(stampMax):
		return StampBeyond
	}
	return Stamp(max(t.UnixNano(), 1))
}

// Time is s as a time.Time, in UTC.
func (s Stamp) Time() time.Time {
	if s == 0 || s == StampBeyond {
		return time.Time{}
	}
	return time.Unix(0, int64(s)).UTC()
}

// IsZero reports whether s is the zero time.
func (s Stamp) IsZero() bool { return s == 0 }

// Before reports whether s is before t.
func (s Stamp) Before(t Stamp) bool { return s < t }

// Endpoints are the ready and not-ready addresses of a Service, in the
// EndpointSlice form (the Endpoints kind is deprecated upstream): one slice
// per distinct set of resolved ports, as the EndpointSlice controller makes
// them when a named targetPort resolves to different numbers on different
// pods. Slices and their endpoints are sorted, so equal content compares
// equal.
type Endpoints struct {
	Key         string // namespace/name
	Namespace   string
	Name        string
	Slices      []*discoveryv1.EndpointSlice
	CreateIndex uint64
	ModifyIndex uint64
}

// Event is something that happened to an object, for describe and events.
type Event struct {
	ID        uint64    `json:"id"`
	ObjectKey string    `json:"object"`
	Type      string    `json:"type"` // Normal or Warning
	Reason    string    `json:"reason"`
	Message   string    `json:"message"`
	Time      time.Time `json:"time"`
}
