package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/nodeagent/runtime"
)

// printPods prints pods as kubectl get pods does.
func printPods(w io.Writer, pods []corev1.Pod, withNS, wide bool, now time.Time) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	h := []string{"NAME", "READY", "STATUS", "RESTARTS", "AGE"}
	if withNS {
		h = append([]string{"NAMESPACE"}, h...)
	}
	if wide {
		h = append(h, "IP", "NODE")
	}
	fmt.Fprintln(tw, strings.Join(h, "\t"))
	sort.Slice(pods, func(i, j int) bool {
		if pods[i].Namespace != pods[j].Namespace {
			return pods[i].Namespace < pods[j].Namespace
		}
		return pods[i].Name < pods[j].Name
	})
	for _, p := range pods {
		status, ready, restarts := PodSummary(&p)
		age := "<unknown>"
		if p.Status.StartTime != nil {
			age = humanDuration(now.Sub(p.Status.StartTime.Time))
		}
		row := []string{p.Name, ready, status, fmt.Sprint(restarts), age}
		if withNS {
			row = append([]string{p.Namespace}, row...)
		}
		if wide {
			row = append(row, orNone(p.Status.PodIP), orNone(p.Spec.NodeName))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
}

func newDescribeCmd() *cobra.Command {
	var namespace string
	cmd := &cobra.Command{
		Use:   "describe KIND NAME",
		Short: "Show an object: a pod's containers and states, any object's source, status and events",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := lookupResource(args[0])
			if err != nil {
				return err
			}
			if r.kind == "Node" {
				return describeNode(cmd, args[1])
			}
			if r.kind != "Pod" {
				return describeObject(cmd, r, namespace, args[1])
			}
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			p, err := c.Pod(cmd.Context(), namespace, args[1])
			if err != nil {
				return err
			}
			ev, err := c.Events(cmd.Context(), "Pod/"+namespace+"/"+args[1], client.Query{})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			now := time.Now()
			status, ready, restarts := PodSummary(p)
			fmt.Fprintf(w, "Name:       %s\nNamespace:  %s\nNode:       %s\nStatus:     %s\nReady:      %s\nRestarts:   %d\nIP:         %s\n",
				p.Name, p.Namespace, orNone(p.Spec.NodeName), status, ready, restarts, orNone(p.Status.PodIP))
			if p.Status.StartTime != nil {
				fmt.Fprintf(w, "Start Time: %s\n", p.Status.StartTime.Format(time.RFC1123Z))
			}
			if line := parkedLine(p); line != "" {
				fmt.Fprintln(w, line)
			}
			if len(p.Labels) > 0 {
				fmt.Fprintf(w, "Labels:     %s\n", selectorString(p.Labels))
			}
			fmt.Fprintf(w, "Containers:\n%s", describeStates(p))
			fmt.Fprintln(w, "Conditions:")
			for _, c := range p.Status.Conditions {
				fmt.Fprintf(w, "  %-26s %s\n", c.Type, c.Status)
			}
			fmt.Fprintln(w, "Events:")
			if len(ev.Items) == 0 {
				fmt.Fprintln(w, "  <none>")
			}
			tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
			for _, e := range ev.Items {
				fmt.Fprintf(tw, "  %s\t%s\t%s ago\t%s\n", e.Type, e.Reason, humanDuration(now.Sub(e.Time)), e.Message)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace")
	return cmd
}

func newLogsCmd() *cobra.Command {
	var (
		namespace string
		o         client.LogOptions
	)
	cmd := &cobra.Command{
		Use:   "logs POD [-c CONTAINER] [-f] [--previous] [--tail N]",
		Short: "Print a container's log",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			return c.Logs(cmd.Context(), namespace, args[0], o, cmd.OutOrStdout())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&namespace, "namespace", "n", "default", "namespace")
	f.StringVarP(&o.Container, "container", "c", "", "container (needed when the pod has several)")
	f.BoolVarP(&o.Follow, "follow", "f", false, "keep printing what the container writes")
	f.BoolVarP(&o.Previous, "previous", "p", false, "the log of the container's previous run")
	f.IntVar(&o.Tail, "tail", -1, "only the last N lines")
	return cmd
}

func newEventsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "events",
		Short: "List events, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			ev, err := c.Events(cmd.Context(), "", client.Query{})
			if err != nil {
				return err
			}
			now := time.Now()
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 2, ' ', 0)
			fmt.Fprintln(tw, "AGE\tTYPE\tREASON\tOBJECT\tMESSAGE")
			for _, e := range ev.Items {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", humanDuration(now.Sub(e.Time)), e.Type, e.Reason, orNone(e.ObjectKey), e.Message)
			}
			return tw.Flush()
		},
	}
}

func newImageCmd() *cobra.Command {
	var socket, dataDir string
	img := &cobra.Command{Use: "image", Short: "Manage the node's images"}
	imp := &cobra.Command{
		Use:   "import FILE...",
		Short: "Import OCI or docker save archives into the node's containerd",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if socket == "" {
				socket = runtime.DaemonSocket(dataDir + "/containerd")
			}
			rt, err := runtime.Connect(cmd.Context(), socket, "keelson", nil)
			if err != nil {
				return fmt.Errorf("containerd at %s (is the agent running?): %w", socket, err)
			}
			defer rt.Close()
			for _, f := range args {
				if _, err := os.Stat(f); err != nil {
					return err
				}
				refs, err := rt.ImportArchive(cmd.Context(), f)
				if err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
				for _, r := range refs {
					fmt.Fprintf(cmd.OutOrStdout(), "imported %s from %s\n", r, f)
				}
			}
			return nil
		},
	}
	imp.Flags().StringVar(&socket, "containerd-socket", "", "containerd socket (default: the agent's private containerd under --data-dir)")
	imp.Flags().StringVar(&dataDir, "data-dir", defaultDataDir()+"/agent", "the agent's data directory")
	img.AddCommand(imp)
	return img
}

// PodSummary is the STATUS column of `get pods`, as kubectl computes it:
// while init containers run it is Init:N/M, or Init:REASON for one that
// waits (Init:CrashLoopBackOff) or failed (Init:Error); sidecars (init
// containers with restartPolicy Always) count among the READY containers.
func PodSummary(pod *corev1.Pod) (status string, ready string, restarts int32) {
	status = string(pod.Status.Phase)
	if pod.Status.Reason != "" {
		status = pod.Status.Reason
	}
	var nReady, total int
	total = len(pod.Spec.Containers)
	sidecar := map[string]bool{}
	for _, c := range pod.Spec.InitContainers {
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			sidecar[c.Name] = true
			total++
		}
	}
	initializing := false
	for i, cs := range pod.Status.InitContainerStatuses {
		restarts += cs.RestartCount
		if sidecar[cs.Name] && cs.Ready {
			nReady++
		}
		if initializing {
			continue
		}
		switch {
		case cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0:
			continue
		case sidecar[cs.Name] && cs.Started != nil && *cs.Started:
			continue
		case cs.State.Terminated != nil:
			if cs.State.Terminated.Reason == "" {
				status = fmt.Sprintf("Init:ExitCode:%d", cs.State.Terminated.ExitCode)
			} else {
				status = "Init:" + cs.State.Terminated.Reason
			}
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "" && cs.State.Waiting.Reason != "PodInitializing":
			status = "Init:" + cs.State.Waiting.Reason
		default:
			status = fmt.Sprintf("Init:%d/%d", i, len(pod.Spec.InitContainers))
		}
		initializing = true
	}
	for _, cs := range pod.Status.ContainerStatuses {
		restarts += cs.RestartCount
		if cs.Ready {
			nReady++
		}
		if initializing {
			continue
		}
		switch {
		case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
			status = cs.State.Waiting.Reason
		case cs.State.Terminated != nil && cs.State.Terminated.Reason != "" && pod.Status.Phase != corev1.PodRunning:
			status = cs.State.Terminated.Reason
		}
	}
	if pod.DeletionTimestamp != nil {
		status = "Terminating"
	} else if pod.Annotations[api.AnnotationParkedUntil] != "" {
		status = "Parked" // running, out of its services: a scale-down delay keeps it
	}
	if status == "" {
		status = "Pending"
	}
	return status, fmt.Sprintf("%d/%d", nReady, total), restarts
}

// parkedLine is describe's line for a parked pod, "" for others.
func parkedLine(p *corev1.Pod) string {
	until, ok := p.Annotations[api.AnnotationParkedUntil]
	if !ok || p.DeletionTimestamp != nil {
		return ""
	}
	if t, err := time.Parse(time.RFC3339, until); err == nil {
		until = t.Format(time.RFC1123Z)
	}
	by := p.Annotations[api.AnnotationParkedBy]
	if _, rest, ok := strings.Cut(by, "/"); ok {
		_, by, _ = strings.Cut(rest, "/") // Deployment/namespace/name: the name
	}
	return fmt.Sprintf("Parked:     until %s (scale-down delay of Deployment %s): running, out of its services; a revert takes it back", until, by)
}

// describeStates renders container states for describe output.
func describeStates(pod *corev1.Pod) string {
	var b strings.Builder
	names := make([]string, 0, len(pod.Status.ContainerStatuses))
	byName := map[string]corev1.ContainerStatus{}
	for _, cs := range pod.Status.ContainerStatuses {
		names = append(names, cs.Name)
		byName[cs.Name] = cs
	}
	sort.Strings(names)
	for _, n := range names {
		cs := byName[n]
		fmt.Fprintf(&b, "  %s:\n    Image: %s\n", n, cs.Image)
		if cs.ContainerID != "" {
			fmt.Fprintf(&b, "    Container ID: %s\n", cs.ContainerID)
		}
		writeState(&b, "State", cs.State)
		if cs.LastTerminationState.Terminated != nil {
			writeState(&b, "Last State", cs.LastTerminationState)
		}
		fmt.Fprintf(&b, "    Ready: %t\n    Restart Count: %d\n", cs.Ready, cs.RestartCount)
	}
	return b.String()
}

func writeState(b *strings.Builder, label string, s corev1.ContainerState) {
	switch {
	case s.Running != nil:
		fmt.Fprintf(b, "    %s: Running\n      Started: %s\n", label, s.Running.StartedAt.Format(time.RFC1123Z))
	case s.Waiting != nil:
		fmt.Fprintf(b, "    %s: Waiting\n      Reason: %s\n", label, s.Waiting.Reason)
		if s.Waiting.Message != "" {
			fmt.Fprintf(b, "      Message: %s\n", s.Waiting.Message)
		}
	case s.Terminated != nil:
		t := s.Terminated
		fmt.Fprintf(b, "    %s: Terminated\n      Reason: %s\n      Exit Code: %d\n      Started: %s\n      Finished: %s\n",
			label, t.Reason, t.ExitCode, t.StartedAt.Format(time.RFC1123Z), t.FinishedAt.Format(time.RFC1123Z))
		if t.Message != "" {
			fmt.Fprintf(b, "      Message: %s\n", t.Message)
		}
	}
}

// describeObject shows a desired object: where it comes from in Git, its
// labels, its observed status and its events.
func describeObject(cmd *cobra.Command, r *resource, namespace, name string) error {
	c, err := apiClient(cmd)
	if err != nil {
		return err
	}
	ns := namespace
	if !r.namespaced {
		ns = ""
	}
	o, err := c.Object(cmd.Context(), r.kind, ns, name)
	if err != nil {
		return err
	}
	ev, err := c.Events(cmd.Context(), o.Key, client.Query{})
	if err != nil {
		return err
	}
	var obj struct {
		Metadata struct {
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec   any `json:"spec"`
		Status any `json:"status"`
	}
	_ = json.Unmarshal(o.Object, &obj)
	w := cmd.OutOrStdout()
	fmt.Fprintf(w, "Name:       %s\n", o.Name)
	if o.Namespace != "" {
		fmt.Fprintf(w, "Namespace:  %s\n", o.Namespace)
	}
	fmt.Fprintf(w, "Kind:       %s\n", o.Kind)
	fmt.Fprintf(w, "Source:     %s:%d (commit %s)\n", o.File, o.Line, shortSHA(o.Revision))
	if len(obj.Metadata.Labels) > 0 {
		fmt.Fprintf(w, "Labels:     %s\n", selectorString(obj.Metadata.Labels))
	}
	for _, part := range []struct {
		title string
		v     any
	}{{"Spec", obj.Spec}, {"Status", obj.Status}} {
		if part.v == nil {
			continue
		}
		b, err := json.Marshal(part.v)
		if err != nil {
			continue
		}
		y, err := yaml.JSONToYAML(b)
		if err != nil {
			continue
		}
		fmt.Fprintf(w, "%s:\n", part.title)
		for _, line := range strings.Split(strings.TrimRight(string(y), "\n"), "\n") {
			fmt.Fprintf(w, "  %s\n", line)
		}
	}
	if o.Kind == "Ingress" {
		if err := describeIngressRules(cmd.Context(), w, c, o.Object); err != nil {
			fmt.Fprintf(w, "Rules: %v\n", err)
		}
	}
	fmt.Fprintln(w, "Events:")
	if len(ev.Items) == 0 {
		fmt.Fprintln(w, "  <none>")
	}
	now := time.Now()
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, e := range ev.Items {
		fmt.Fprintf(tw, "  %s\t%s\t%s ago\t%s\n", e.Type, e.Reason, humanDuration(now.Sub(e.Time)), e.Message)
	}
	return tw.Flush()
}

// describeNode shows a node as the controller holds it: labels, taints,
// addresses, capacity and what is allocatable, conditions, its pods and its
// events.
func describeNode(cmd *cobra.Command, name string) error {
	c, err := apiClient(cmd)
	if err != nil {
		return err
	}
	nodes, err := c.Nodes(cmd.Context(), client.Query{})
	if err != nil {
		return err
	}
	var n *corev1.Node
	for i := range nodes.Items {
		if nodes.Items[i].Name == name {
			n = &nodes.Items[i]
		}
	}
	if n == nil {
		return fmt.Errorf("node %q not found", name)
	}
	pods, err := c.Pods(cmd.Context(), client.PodQuery{Node: name})
	if err != nil {
		return err
	}
	ev, err := c.Events(cmd.Context(), "Node/"+name, client.Query{})
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	now := time.Now()
	fmt.Fprintf(w, "Name:       %s\nLabels:     %s\nPod CIDR:   %s\nCreated:    %s ago\n", n.Name, selectorString(n.Labels), orNone(n.Spec.PodCIDR), humanDuration(now.Sub(n.CreationTimestamp.Time)))
	var taints []string
	for _, t := range n.Spec.Taints {
		taints = append(taints, t.ToString())
	}
	fmt.Fprintf(w, "Taints:     %s\nUnschedulable: %v\nAddresses:\n", orNone(strings.Join(taints, ", ")), n.Spec.Unschedulable)
	for _, a := range n.Status.Addresses {
		fmt.Fprintf(w, "  %s: %s\n", a.Type, a.Address)
	}
	fmt.Fprintln(w, "Capacity / Allocatable:")
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourcePods} {
		cp, al := n.Status.Capacity[r], n.Status.Allocatable[r]
		fmt.Fprintf(w, "  %-8s %s / %s\n", r, cp.String(), al.String())
	}
	fmt.Fprintln(w, "Conditions:")
	for _, cond := range n.Status.Conditions {
		fmt.Fprintf(w, "  %-8s %-6s %s %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
	}
	fmt.Fprintf(w, "Pods (%d):\n", len(pods.Items))
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, p := range pods.Items {
		status, ready, _ := PodSummary(&p)
		fmt.Fprintf(tw, "  %s/%s\t%s\t%s\t%s\n", p.Namespace, p.Name, ready, status, orNone(p.Status.PodIP))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "Events:")
	if len(ev.Items) == 0 {
		fmt.Fprintln(w, "  <none>")
	}
	tw = tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, e := range ev.Items {
		fmt.Fprintf(tw, "  %s\t%s\t%s ago\t%s\n", e.Type, e.Reason, humanDuration(now.Sub(e.Time)), e.Message)
	}
	return tw.Flush()
}
