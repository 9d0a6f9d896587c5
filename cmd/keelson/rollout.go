package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/keelson/keelson/apiserver/client"
)

func newRolloutCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rollout",
		Short: "Follow the rollout of a Deployment, DaemonSet or StatefulSet, or list its history",
	}
	cmd.AddCommand(newRolloutStatusCmd(), newRolloutHistoryCmd())
	return cmd
}

type rolloutStatusOptions struct {
	namespace string
	timeout   time.Duration
	watch     bool
}

func newRolloutStatusCmd() *cobra.Command {
	var o rolloutStatusOptions
	cmd := &cobra.Command{
		Use:   "status (TYPE NAME | TYPE/NAME)",
		Short: "Wait until a rollout is done, printing its progress as kubectl does",
		Long: `Status follows a Deployment, DaemonSet or StatefulSet (deploy/NAME, ds/NAME,
sts/NAME) with blocking queries and prints kubectl's messages until its
rollout is done. It exits 1 when a Deployment's rollout exceeds its
progressDeadlineSeconds, or when --timeout passes first.

A commit is applied a moment after it is pushed: run status once the
controller shows the commit (keelson status), or it may report the rollout
of the commit before.`,
		Example: `  keelson rollout status deploy/web
  keelson rollout status statefulset db --timeout 5m`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return rolloutStatus(cmd, args, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace")
	f.DurationVar(&o.timeout, "timeout", 0, "how long to wait before giving up; 0 waits for ever")
	f.BoolVarP(&o.watch, "watch", "w", true, "wait for the rollout to finish; with --watch=false print its status once")
	return cmd
}

// rolloutKinds are the kinds with a rollout status.
var rolloutKinds = map[string]func(raw json.RawMessage) (string, bool, error){
	"Deployment":  deploymentRolloutStatus,
	"DaemonSet":   daemonSetRolloutStatus,
	"StatefulSet": statefulSetRolloutStatus,
}

// rolloutTarget reads the object a rollout verb names, TYPE/NAME or TYPE
// NAME, of a kind that rolls out; what ("follow", "show") and verb
// ("status", "history") word the errors.
func rolloutTarget(args []string, what, verb string) (*resource, string, error) {
	kindName, name := args[0], ""
	if len(args) == 2 {
		name = args[1]
	} else if k, n, ok := strings.Cut(args[0], "/"); ok {
		kindName, name = k, n
	}
	if name == "" {
		return nil, "", fmt.Errorf("say what to %s: TYPE/NAME or TYPE NAME, for example deploy/web", what)
	}
	res, err := lookupResource(kindName)
	if err != nil {
		return nil, "", err
	}
	if _, ok := rolloutKinds[res.kind]; !ok {
		return nil, "", fmt.Errorf("no rollout %s for %s: only Deployments, DaemonSets and StatefulSets roll out", verb, res.names[0])
	}
	return res, name, nil
}

func rolloutStatus(cmd *cobra.Command, args []string, o rolloutStatusOptions) error {
	res, name, err := rolloutTarget(args, "follow", "status")
	if err != nil {
		return err
	}
	status := rolloutKinds[res.kind]
	c, err := apiClient(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	if o.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.timeout)
		defer cancel()
	}
	var (
		idx  uint64
		last string
	)
	for {
		list, err := c.Objects(ctx, client.Query{Kind: res.kind, Namespace: o.namespace, Index: idx, Wait: 5 * time.Minute})
		switch {
		case errors.Is(ctx.Err(), context.DeadlineExceeded) && cmd.Context().Err() == nil:
			return fmt.Errorf("timed out after %s waiting for the rollout of %s %q to finish", o.timeout, strings.ToLower(res.kind), name)
		case cmd.Context().Err() != nil:
			return nil // interrupted
		case err != nil:
			return err
		}
		idx = list.Index
		var raw json.RawMessage
		for _, it := range list.Items {
			if it.Name == name {
				raw = it.Object
			}
		}
		if raw == nil {
			return fmt.Errorf("%s %q in namespace %q: %w", strings.ToLower(res.kind), name, o.namespace, client.ErrNotFound)
		}
		msg, done, err := status(raw)
		if err != nil {
			return err
		}
		if msg != last {
			fmt.Fprintln(cmd.OutOrStdout(), msg)
			last = msg
		}
		if done || !o.watch {
			return nil
		}
	}
}

// observed reports whether a status was computed for the object's current
// spec. Objects from Git carry no generation and lose their status when Git
// changes them; the controller then writes observedGeneration 1 at least.
func observed(generation, observedGeneration int64) bool {
	return observedGeneration >= max(generation, 1)
}

// deploymentRolloutStatus is kubectl's status of a Deployment's rollout:
// the message, whether it is done, and an error once it failed.
func deploymentRolloutStatus(raw json.RawMessage) (string, bool, error) {
	var d appsv1.Deployment
	if err := json.Unmarshal(raw, &d); err != nil {
		return "", false, fmt.Errorf("decode deployment: %w", err)
	}
	if !observed(d.Generation, d.Status.ObservedGeneration) {
		return "Waiting for deployment spec update to be observed...", false, nil
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return "", false, fmt.Errorf("deployment %q exceeded its progress deadline", d.Name)
		}
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	st := d.Status
	switch {
	case st.UpdatedReplicas < want:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", d.Name, st.UpdatedReplicas, want), false, nil
	case st.Replicas > st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", d.Name, st.Replicas-st.UpdatedReplicas), false, nil
	case st.AvailableReplicas < st.UpdatedReplicas:
		return fmt.Sprintf("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", d.Name, st.AvailableReplicas, st.UpdatedReplicas), false, nil
	}
	return fmt.Sprintf("deployment %q successfully rolled out", d.Name), true, nil
}

func daemonSetRolloutStatus(raw json.RawMessage) (string, bool, error) {
	var ds appsv1.DaemonSet
	if err := json.Unmarshal(raw, &ds); err != nil {
		return "", false, fmt.Errorf("decode daemon set: %w", err)
	}
	if t := ds.Spec.UpdateStrategy.Type; t != "" && t != appsv1.RollingUpdateDaemonSetStrategyType {
		return "", false, fmt.Errorf("daemon set %q: rollout status is only available for the RollingUpdate strategy, not %s", ds.Name, t)
	}
	if !observed(ds.Generation, ds.Status.ObservedGeneration) {
		return "Waiting for daemon set spec update to be observed...", false, nil
	}
	st := ds.Status
	switch {
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		return fmt.Sprintf("Waiting for daemon set %q rollout to finish: %d out of %d new pods have been updated...", ds.Name, st.UpdatedNumberScheduled, st.DesiredNumberScheduled), false, nil
	case st.NumberAvailable < st.DesiredNumberScheduled:
		return fmt.Sprintf("Waiting for daemon set %q rollout to finish: %d of %d updated pods are available...", ds.Name, st.NumberAvailable, st.DesiredNumberScheduled), false, nil
	}
	return fmt.Sprintf("daemon set %q successfully rolled out", ds.Name), true, nil
}

func statefulSetRolloutStatus(raw json.RawMessage) (string, bool, error) {
	var ss appsv1.StatefulSet
	if err := json.Unmarshal(raw, &ss); err != nil {
		return "", false, fmt.Errorf("decode statefulset: %w", err)
	}
	us := ss.Spec.UpdateStrategy
	if us.Type != "" && us.Type != appsv1.RollingUpdateStatefulSetStrategyType {
		return "", false, fmt.Errorf("statefulset %q: rollout status is only available for the RollingUpdate strategy, not %s", ss.Name, us.Type)
	}
	if !observed(ss.Generation, ss.Status.ObservedGeneration) {
		return "Waiting for statefulset spec update to be observed...", false, nil
	}
	want := int32(1)
	if ss.Spec.Replicas != nil {
		want = *ss.Spec.Replicas
	}
	st := ss.Status
	if st.ReadyReplicas < want {
		return fmt.Sprintf("Waiting for %d pods to be ready...", want-st.ReadyReplicas), false, nil
	}
	// An API server gives a StatefulSet without a strategy a partition of
	// 0, so kubectl reports those as partitioned roll outs: so does this.
	if us.Type == "" || us.RollingUpdate != nil {
		partition := int32(0)
		if us.RollingUpdate != nil && us.RollingUpdate.Partition != nil {
			partition = *us.RollingUpdate.Partition
		}
		if st.UpdatedReplicas < want-partition {
			return fmt.Sprintf("Waiting for partitioned roll out to finish: %d out of %d new pods have been updated...", st.UpdatedReplicas, want-partition), false, nil
		}
		return fmt.Sprintf("partitioned roll out complete: %d new pods have been updated...", st.UpdatedReplicas), true, nil
	}
	if st.UpdateRevision != st.CurrentRevision {
		return fmt.Sprintf("waiting for statefulset rolling update to complete %d pods at revision %s...", st.UpdatedReplicas, st.UpdateRevision), false, nil
	}
	return fmt.Sprintf("statefulset rolling update complete %d pods at revision %s...", st.CurrentReplicas, st.CurrentRevision), true, nil
}
