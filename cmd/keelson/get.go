package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/store"
)

// resource describes a kind for the CLI: the names users type and how to
// print it as a table.
type resource struct {
	kind       string
	names      []string // plural first, then singular and short names
	namespaced bool
	// columns are the extra columns after NAME; wide ones only with -o wide.
	columns []column
}

type column struct {
	header string
	wide   bool
	value  func(raw json.RawMessage) string
}

func typed[T any](f func(*T) string) func(json.RawMessage) string {
	return func(raw json.RawMessage) string {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return "<invalid>"
		}
		return f(&v)
	}
}

func images(spec corev1.PodSpec) string {
	var s []string
	for _, c := range spec.Containers {
		s = append(s, c.Image)
	}
	return strings.Join(s, ",")
}

func replicas(r *int32) string {
	if r == nil {
		return "1"
	}
	return strconv.Itoa(int(*r))
}

func selectorString(m map[string]string) string {
	if len(m) == 0 {
		return "<none>"
	}
	return labels.SelectorFromSet(m).String()
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

var resources = []resource{
	{kind: "Namespace", names: []string{"namespaces", "namespace", "ns"}},
	{kind: "Node", names: []string{"nodes", "node", "no"}},
	{kind: "Pod", names: []string{"pods", "pod", "po"}, namespaced: true, columns: []column{
		{header: "CONTAINERS", value: typed(func(p *corev1.Pod) string { return strconv.Itoa(len(p.Spec.Containers)) })},
		{header: "IMAGES", wide: true, value: typed(func(p *corev1.Pod) string { return images(p.Spec) })},
		{header: "NODE", wide: true, value: typed(func(p *corev1.Pod) string { return orNone(p.Spec.NodeName) })},
	}},
	{kind: "Deployment", names: []string{"deployments", "deployment", "deploy"}, namespaced: true, columns: []column{
		{header: "READY", value: typed(func(d *appsv1.Deployment) string {
			return fmt.Sprintf("%d/%s", d.Status.ReadyReplicas, replicas(d.Spec.Replicas))
		})},
		{header: "UP-TO-DATE", value: typed(func(d *appsv1.Deployment) string { return strconv.Itoa(int(d.Status.UpdatedReplicas)) })},
		{header: "AVAILABLE", value: typed(func(d *appsv1.Deployment) string { return strconv.Itoa(int(d.Status.AvailableReplicas)) })},
		{header: "STRATEGY", wide: true, value: typed(func(d *appsv1.Deployment) string { return orNone(string(d.Spec.Strategy.Type)) })},
		{header: "IMAGES", wide: true, value: typed(func(d *appsv1.Deployment) string { return images(d.Spec.Template.Spec) })},
		{header: "SELECTOR", wide: true, value: typed(func(d *appsv1.Deployment) string {
			if d.Spec.Selector == nil {
				return "<none>"
			}
			return selectorString(d.Spec.Selector.MatchLabels)
		})},
	}},
	{kind: "ReplicaSet", names: []string{"replicasets", "replicaset", "rs"}, namespaced: true, columns: []column{
		{header: "REPLICAS", value: typed(func(d *appsv1.ReplicaSet) string { return replicas(d.Spec.Replicas) })},
		{header: "IMAGES", wide: true, value: typed(func(d *appsv1.ReplicaSet) string { return images(d.Spec.Template.Spec) })},
	}},
	{kind: "DaemonSet", names: []string{"daemonsets", "daemonset", "ds"}, namespaced: true, columns: []column{
		{header: "DESIRED", value: typed(func(d *appsv1.DaemonSet) string { return strconv.Itoa(int(d.Status.DesiredNumberScheduled)) })},
		{header: "READY", value: typed(func(d *appsv1.DaemonSet) string { return strconv.Itoa(int(d.Status.NumberReady)) })},
		{header: "NODE SELECTOR", value: typed(func(d *appsv1.DaemonSet) string { return selectorString(d.Spec.Template.Spec.NodeSelector) })},
		{header: "IMAGES", wide: true, value: typed(func(d *appsv1.DaemonSet) string { return images(d.Spec.Template.Spec) })},
	}},
	{kind: "StatefulSet", names: []string{"statefulsets", "statefulset", "sts"}, namespaced: true, columns: []column{
		{header: "READY", value: typed(func(d *appsv1.StatefulSet) string {
			return fmt.Sprintf("%d/%s", d.Status.ReadyReplicas, replicas(d.Spec.Replicas))
		})},
		{header: "IMAGES", wide: true, value: typed(func(d *appsv1.StatefulSet) string { return images(d.Spec.Template.Spec) })},
	}},
	{kind: "Job", names: []string{"jobs", "job"}, namespaced: true, columns: []column{
		{header: "COMPLETIONS", value: typed(func(j *batchv1.Job) string {
			return fmt.Sprintf("%d/%s", j.Status.Succeeded, replicas(j.Spec.Completions))
		})},
		{header: "ACTIVE", value: typed(func(j *batchv1.Job) string { return strconv.Itoa(int(j.Status.Active)) })},
		{header: "FAILED", value: typed(func(j *batchv1.Job) string { return strconv.Itoa(int(j.Status.Failed)) })},
		{header: "IMAGES", wide: true, value: typed(func(j *batchv1.Job) string { return images(j.Spec.Template.Spec) })},
	}},
	{kind: "CronJob", names: []string{"cronjobs", "cronjob", "cj"}, namespaced: true, columns: []column{
		{header: "SCHEDULE", value: typed(func(j *batchv1.CronJob) string { return j.Spec.Schedule })},
		{header: "SUSPEND", value: typed(func(j *batchv1.CronJob) string {
			return strconv.FormatBool(j.Spec.Suspend != nil && *j.Spec.Suspend)
		})},
		{header: "ACTIVE", value: typed(func(j *batchv1.CronJob) string { return strconv.Itoa(len(j.Status.Active)) })},
		{header: "LAST SCHEDULE", value: typed(func(j *batchv1.CronJob) string {
			if j.Status.LastScheduleTime == nil {
				return "<none>"
			}
			return j.Status.LastScheduleTime.UTC().Format(time.RFC3339)
		})},
	}},
	{kind: "Service", names: []string{"services", "service", "svc"}, namespaced: true, columns: []column{
		{header: "TYPE", value: typed(func(s *corev1.Service) string {
			if s.Spec.Type == "" {
				return string(corev1.ServiceTypeClusterIP)
			}
			return string(s.Spec.Type)
		})},
		{header: "CLUSTER-IP", value: typed(func(s *corev1.Service) string { return orNone(s.Spec.ClusterIP) })},
		{header: "EXTERNAL-IP", value: typed(func(s *corev1.Service) string {
			var ips []string
			for _, in := range s.Status.LoadBalancer.Ingress {
				ips = append(ips, in.IP)
			}
			ips = append(ips, s.Spec.ExternalIPs...)
			if len(ips) == 0 && s.Spec.Type == corev1.ServiceTypeLoadBalancer {
				return "<pending>"
			}
			if s.Spec.Type == corev1.ServiceTypeExternalName {
				return s.Spec.ExternalName
			}
			return orNone(strings.Join(ips, ","))
		})},
		{header: "PORT(S)", value: typed(func(s *corev1.Service) string {
			var ps []string
			for _, p := range s.Spec.Ports {
				v := strconv.Itoa(int(p.Port))
				if p.NodePort != 0 {
					v += ":" + strconv.Itoa(int(p.NodePort))
				}
				proto := p.Protocol
				if proto == "" {
					proto = corev1.ProtocolTCP
				}
				ps = append(ps, v+"/"+string(proto))
			}
			return orNone(strings.Join(ps, ","))
		})},
		{header: "SELECTOR", wide: true, value: typed(func(s *corev1.Service) string { return selectorString(s.Spec.Selector) })},
	}},
	{kind: "Event", names: []string{"events", "event", "ev"}, namespaced: true},
	{kind: "Endpoints", names: []string{"endpoints", "ep"}, namespaced: true},
	{kind: "EndpointSlice", names: []string{"endpointslices", "endpointslice"}, namespaced: true},
	{kind: "Ingress", names: []string{"ingresses", "ingress", "ing"}, namespaced: true, columns: []column{
		{header: "CLASS", value: typed(func(i *networkingv1.Ingress) string {
			if i.Spec.IngressClassName == nil {
				return "<none>"
			}
			return *i.Spec.IngressClassName
		})},
		{header: "HOSTS", value: typed(func(i *networkingv1.Ingress) string {
			var hs []string
			for _, r := range i.Spec.Rules {
				if r.Host == "" {
					hs = append(hs, "*")
				} else {
					hs = append(hs, r.Host)
				}
			}
			return orNone(strings.Join(hs, ","))
		})},
		{header: "ADDRESS", value: typed(func(i *networkingv1.Ingress) string {
			var as []string
			for _, in := range i.Status.LoadBalancer.Ingress {
				as = append(as, in.IP)
			}
			return strings.Join(as, ",")
		})},
		{header: "PORTS", value: typed(func(i *networkingv1.Ingress) string {
			if len(i.Spec.TLS) > 0 {
				return "80, 443"
			}
			return "80"
		})},
	}},
	{kind: "IngressClass", names: []string{"ingressclasses", "ingressclass"}},
	{kind: "ConfigMap", names: []string{"configmaps", "configmap", "cm"}, namespaced: true, columns: []column{
		{header: "DATA", value: typed(func(c *corev1.ConfigMap) string { return strconv.Itoa(len(c.Data) + len(c.BinaryData)) })},
	}},
	{kind: "Secret", names: []string{"secrets", "secret"}, namespaced: true, columns: []column{
		{header: "TYPE", value: typed(func(s *corev1.Secret) string { return orNone(string(s.Type)) })},
		{header: "DATA", value: typed(func(s *corev1.Secret) string { return strconv.Itoa(len(s.Data) + len(s.StringData)) })},
	}},
	{kind: "PersistentVolumeClaim", names: []string{"persistentvolumeclaims", "persistentvolumeclaim", "pvc"}, namespaced: true},
	{kind: "PersistentVolume", names: []string{"persistentvolumes", "persistentvolume", "pv"}},
	{kind: "StorageClass", names: []string{"storageclasses", "storageclass", "sc"}},
	{kind: "ServiceAccount", names: []string{"serviceaccounts", "serviceaccount", "sa"}, namespaced: true},
	{kind: "Role", names: []string{"roles", "role"}, namespaced: true},
	{kind: "ClusterRole", names: []string{"clusterroles", "clusterrole"}},
	{kind: "RoleBinding", names: []string{"rolebindings", "rolebinding"}, namespaced: true},
	{kind: "ClusterRoleBinding", names: []string{"clusterrolebindings", "clusterrolebinding"}},
	{kind: "NetworkPolicy", names: []string{"networkpolicies", "networkpolicy", "netpol"}, namespaced: true},
	{kind: "PodDisruptionBudget", names: []string{"poddisruptionbudgets", "poddisruptionbudget", "pdb"}, namespaced: true},
	{kind: "HorizontalPodAutoscaler", names: []string{"horizontalpodautoscalers", "horizontalpodautoscaler", "hpa"}, namespaced: true},
	{kind: "ResourceQuota", names: []string{"resourcequotas", "resourcequota", "quota"}, namespaced: true},
	{kind: "LimitRange", names: []string{"limitranges", "limitrange", "limits"}, namespaced: true},
}

// lookupResource finds a resource by any of its names or its kind,
// case-insensitively, as kubectl does.
func lookupResource(name string) (*resource, error) {
	n := strings.ToLower(name)
	for i := range resources {
		r := &resources[i]
		if strings.ToLower(r.kind) == n {
			return r, nil
		}
		for _, alias := range r.names {
			if alias == n {
				return r, nil
			}
		}
	}
	var known []string
	for _, r := range resources {
		known = append(known, r.names[0])
	}
	return nil, fmt.Errorf("unknown resource type %q; known: %s", name, strings.Join(known, ", "))
}

type getOptions struct {
	namespace     string
	allNamespaces bool
	selector      string
	output        string
	watch         bool
}

func newGetCmd() *cobra.Command {
	var o getOptions
	cmd := &cobra.Command{
		Use:   "get KIND [NAME]",
		Short: "List desired objects, as kubectl get does",
		Long: `Get lists the objects of the applied revision. KIND takes kubectl's names
(pods, po, deployments, deploy, services, svc, configmaps, cm, ...).
-o json prints a Kubernetes List of the real object types; Secret values are
never shown.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !o.watch {
				return runGet(cmd, args, o)
			}
			return watchGet(cmd, args, o)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.namespace, "namespace", "n", "default", "namespace")
	f.BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "list objects of every namespace")
	f.StringVarP(&o.selector, "selector", "l", "", "label selector, for example app=web,tier!=db")
	f.StringVarP(&o.output, "output", "o", "", "wide, json or yaml")
	f.BoolVarP(&o.watch, "watch", "w", false, "print again each time the cluster changes, until interrupted")
	return cmd
}

func runGet(cmd *cobra.Command, args []string, o getOptions) error {
	res, err := lookupResource(args[0])
	if err != nil {
		return err
	}
	switch o.output {
	case "", "wide", "json", "yaml":
	default:
		return fmt.Errorf("-o %q: want wide, json or yaml", o.output)
	}
	if o.selector != "" {
		if _, err := labels.Parse(o.selector); err != nil {
			return fmt.Errorf("-l %q: %w", o.selector, err)
		}
	}
	c, err := apiClient(cmd)
	if err != nil {
		return err
	}
	ns := o.namespace
	if !res.namespaced || o.allNamespaces {
		ns = ""
	}
	if res.kind == "Node" {
		return getNodes(cmd, c, args, o)
	}
	if res.kind == "Event" {
		return getEvents(cmd, c, args, ns, o)
	}
	if res.kind == "Endpoints" || res.kind == "EndpointSlice" {
		return getEndpoints(cmd, c, res.kind, args, ns, o)
	}
	if res.kind == "Pod" {
		done, err := getPods(cmd, c, args, ns, o)
		if done || err != nil {
			return err
		}
	}
	var items []api.Object
	if len(args) == 2 {
		if o.allNamespaces && res.namespaced {
			return fmt.Errorf("a name cannot be used with --all-namespaces")
		}
		obj, err := c.Object(cmd.Context(), res.kind, ns, args[1])
		if err != nil {
			return err
		}
		items = []api.Object{*obj}
	} else {
		list, err := c.Objects(cmd.Context(), client.Query{Kind: res.kind, Namespace: ns, Selector: o.selector})
		if err != nil {
			return err
		}
		items = list.Items
	}
	w := cmd.OutOrStdout()
	switch o.output {
	case "json", "yaml":
		if len(args) == 2 {
			return printStructured(w, o.output, items[0].Object)
		}
		raws := make([]json.RawMessage, len(items))
		for i, it := range items {
			raws[i] = it.Object
		}
		return printStructured(w, o.output, map[string]any{"apiVersion": "v1", "kind": "List", "items": raws, "metadata": map[string]any{}})
	}
	if len(items) == 0 {
		if ns == "" {
			fmt.Fprintf(cmd.ErrOrStderr(), "No %s found.\n", res.names[0])
		} else {
			fmt.Fprintf(cmd.ErrOrStderr(), "No %s found in %s namespace.\n", res.names[0], ns)
		}
		return nil
	}
	printTable(w, res, items, o.allNamespaces && res.namespaced, o.output == "wide")
	return nil
}

func printTable(w io.Writer, res *resource, items []api.Object, withNS, wide bool) {
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	var header []string
	if withNS {
		header = append(header, "NAMESPACE")
	}
	header = append(header, "NAME")
	for _, c := range res.columns {
		if !c.wide || wide {
			header = append(header, c.header)
		}
	}
	header = append(header, "REVISION")
	if wide {
		header = append(header, "SOURCE")
	}
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	sort.SliceStable(items, func(i, j int) bool {
		if items[i].Namespace != items[j].Namespace {
			return items[i].Namespace < items[j].Namespace
		}
		return items[i].Name < items[j].Name
	})
	for _, it := range items {
		var row []string
		if withNS {
			row = append(row, it.Namespace)
		}
		row = append(row, it.Name)
		for _, c := range res.columns {
			if !c.wide || wide {
				row = append(row, c.value(it.Object))
			}
		}
		row = append(row, shortSHA(it.Revision))
		if wide {
			row = append(row, fmt.Sprintf("%s:%d", it.File, it.Line))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	_ = tw.Flush()
}

// printStructured prints v as indented JSON or as YAML.
func printStructured(w io.Writer, format string, v any) error {
	b, err := json.MarshalIndent(v, "", "    ")
	if err != nil {
		return err
	}
	if format == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// getPods lists pods with their status from the pods nodes report. It
// reports false when the server has none, so that the desired Pod objects
// are listed instead.
func getPods(cmd *cobra.Command, c *client.Client, args []string, ns string, o getOptions) (bool, error) {
	var pods []corev1.Pod
	if len(args) == 2 {
		p, err := c.Pod(cmd.Context(), ns, args[1])
		if errors.Is(err, client.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return true, err
		}
		pods = []corev1.Pod{*p}
	} else {
		list, err := c.Pods(cmd.Context(), client.PodQuery{Namespace: ns, Selector: o.selector})
		if err != nil {
			return true, err
		}
		if len(list.Items) == 0 {
			return false, nil
		}
		pods = list.Items
	}
	w := cmd.OutOrStdout()
	switch o.output {
	case "json", "yaml":
		if len(args) == 2 {
			return true, printStructured(w, o.output, pods[0])
		}
		return true, printStructured(w, o.output, map[string]any{"apiVersion": "v1", "kind": "List", "items": pods, "metadata": map[string]any{}})
	}
	printPods(w, pods, o.allNamespaces, o.output == "wide", time.Now())
	return true, nil
}

func getNodes(cmd *cobra.Command, c *client.Client, args []string, o getOptions) error {
	list, err := c.Nodes(cmd.Context(), client.Query{})
	if err != nil {
		return err
	}
	if len(args) == 2 {
		list.Items = slices.DeleteFunc(list.Items, func(n corev1.Node) bool { return n.Name != args[1] })
		if len(list.Items) == 0 {
			return fmt.Errorf("node %q not found", args[1])
		}
	}
	w := cmd.OutOrStdout()
	switch o.output {
	case "json", "yaml":
		return printStructured(w, o.output, map[string]any{"apiVersion": "v1", "kind": "List", "items": list.Items, "metadata": map[string]any{}})
	}
	if len(list.Items) == 0 {
		fmt.Fprintln(cmd.ErrOrStderr(), "No nodes found.")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	h := "NAME\tSTATUS\tAGE\tPOD-CIDR"
	if o.output == "wide" {
		h += "\tINTERNAL-IP\tCPU\tMEMORY"
	}
	fmt.Fprintln(tw, h)
	now := time.Now()
	for _, n := range list.Items {
		status := "NotReady"
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				status = "Ready"
			}
		}
		if n.Spec.Unschedulable {
			status += ",SchedulingDisabled"
		}
		row := fmt.Sprintf("%s\t%s\t%s\t%s", n.Name, status, humanDuration(now.Sub(n.CreationTimestamp.Time)), orNone(n.Spec.PodCIDR))
		if o.output == "wide" {
			ip := ""
			for _, a := range n.Status.Addresses {
				if a.Type == corev1.NodeInternalIP {
					ip = a.Address
				}
			}
			row += fmt.Sprintf("\t%s\t%s\t%s", orNone(ip), n.Status.Allocatable.Cpu().String(), n.Status.Allocatable.Memory().String())
		}
		fmt.Fprintln(tw, row)
	}
	return tw.Flush()
}

// watchGet prints the list, then again after each change of the cluster,
// with blocking queries, until the command is interrupted.
func watchGet(cmd *cobra.Command, args []string, o getOptions) error {
	c, err := apiClient(cmd)
	if err != nil {
		return err
	}
	st, err := c.Status(cmd.Context(), client.Query{})
	if err != nil {
		return err
	}
	idx := st.Index
	for {
		if err := runGet(cmd, args, o); err != nil {
			return err
		}
		for {
			st, err := c.Status(cmd.Context(), client.Query{Index: idx, Wait: 5 * time.Minute})
			if cmd.Context().Err() != nil {
				return nil
			}
			if err != nil {
				return err
			}
			if st.Index != idx {
				idx = st.Index
				break
			}
		}
		fmt.Fprintln(cmd.OutOrStdout())
	}
}

// getEvents lists the events of a namespace's objects (all with -A; those
// of one object when NAME is KIND/NAME, as describe shows them), oldest
// first, as kubectl get events does.
func getEvents(cmd *cobra.Command, c *client.Client, args []string, ns string, o getOptions) error {
	key := ""
	if len(args) == 2 {
		kind, name, ok := strings.Cut(args[1], "/")
		if !ok {
			return fmt.Errorf("get events %s: name the object as KIND/NAME, for example pod/web-1", args[1])
		}
		res, err := lookupResource(kind)
		if err != nil {
			return err
		}
		key = res.kind + "/" + name
		if res.namespaced {
			key = res.kind + "/" + o.namespace + "/" + name
		}
	}
	list, err := c.Events(cmd.Context(), key, client.Query{})
	if err != nil {
		return err
	}
	list.Items = slices.DeleteFunc(list.Items, func(e *store.Event) bool {
		if ns == "" || key != "" {
			return false
		}
		parts := strings.Split(e.ObjectKey, "/")
		return len(parts) != 3 || parts[1] != ns
	})
	w := cmd.OutOrStdout()
	switch o.output {
	case "json", "yaml":
		return printStructured(w, o.output, map[string]any{"apiVersion": "v1", "kind": "List", "items": list.Items, "metadata": map[string]any{}})
	}
	if len(list.Items) == 0 {
		fmt.Fprintln(cmd.ErrOrStderr(), "No events found.")
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "LAST SEEN\tTYPE\tREASON\tOBJECT\tMESSAGE")
	for _, e := range list.Items {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", humanDuration(now.Sub(e.Time)), e.Type, e.Reason, orNone(e.ObjectKey), e.Message)
	}
	return tw.Flush()
}
