// Package reconciler turns Git revisions into the store's desired state and
// desired objects into pods.
//
// Applying a revision is all or nothing: Plan is a pure comparison of the
// store's objects with a loaded revision, and Applier.Apply writes the plan,
// the pruning and the revision record in one store transaction. A revision
// with any error changes no object; it is recorded as Failed with all its
// errors, and the last applied revision keeps running until a later commit
// is good.
//
// Cluster runs the controllers and the scheduler as one pure function of a
// store snapshot and the time (computeCluster), written in one transaction
// per pass. Workloads roll out as Kubernetes rolls them: a Deployment keeps
// one ReplicaSet per pod template it has had (named by the template's hash,
// numbered by revision; a template that comes back re-uses its ReplicaSet)
// and moves pods from the old ones to the new one within maxSurge and
// maxUnavailable, or all at once after the old pods are gone (Recreate); a
// pod counts as available once Ready for minReadySeconds; a rollout without
// progress for progressDeadlineSeconds is marked ProgressDeadlineExceeded
// and its old pods keep serving. DaemonSets and StatefulSets replace the
// pods whose controller-revision-hash label is not their template's, within
// their RollingUpdate bounds, or only pods that are gone (OnDelete).
//
// The controller keeps no database. An object's status lives on its row
// until Git changes the object; what a Deployment's rollout needs beyond
// that (the replicas of each ReplicaSet, revision numbers, its last status
// and so the time it last made progress) lives on the ReplicaSets, which
// only the controller writes. A restarted controller has only Git's
// objects: it adopts the pods its agents report during StartupGrace,
// changes no Deployment's ReplicaSets until then, and rebuilds the lost
// ones from those pods, so that a rollout goes on where it was.
//
// Agents' status reports (ReportPod) and lease renewals (RenewLease) are
// written in batches (groupWriter): whoever holds the token writes every
// write queued so far in one transaction, so that many nodes reporting at
// once cost one write a batch. A report that says what the store already
// holds writes nothing.
package reconciler
