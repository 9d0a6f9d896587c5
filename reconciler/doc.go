// Package reconciler turns Git revisions into the store's desired state and,
// in later stages, desired objects into pods.
//
// Applying a revision is all or nothing: Plan is a pure comparison of the
// store's objects with a loaded revision, and Applier.Apply writes the plan,
// the pruning and the revision record in one store transaction. A revision
// with any error changes no object; it is recorded as Failed with all its
// errors, and the last applied revision keeps running until a later commit
// is good.
package reconciler
