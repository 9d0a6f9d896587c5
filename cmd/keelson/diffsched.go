package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/keelson/keelson/apiserver/client"
	"github.com/keelson/keelson/manifest"
	"github.com/keelson/keelson/reconciler/scheduler"
)

// workload is what scheduling needs of an object that makes pods: how many,
// from which template, and which running pods are its own.
type workload struct {
	key      string
	replicas int
	perNode  bool // a DaemonSet: one pod per eligible node
	template *corev1.PodTemplateSpec
	selector labels.Selector
	ns       string
}

func workloadOf(o *manifest.Object) (*workload, bool) {
	w := &workload{key: o.Key(), ns: o.Namespace}
	count := func(r *int32) int {
		if r == nil {
			return 1
		}
		return int(*r)
	}
	sel := func(s *metav1.LabelSelector) labels.Selector {
		if s == nil {
			return labels.Nothing()
		}
		ls, err := metav1.LabelSelectorAsSelector(s)
		if err != nil {
			return labels.Nothing()
		}
		return ls
	}
	switch x := o.Obj.(type) {
	case *appsv1.Deployment:
		w.replicas, w.template, w.selector = count(x.Spec.Replicas), &x.Spec.Template, sel(x.Spec.Selector)
	case *appsv1.ReplicaSet:
		w.replicas, w.template, w.selector = count(x.Spec.Replicas), &x.Spec.Template, sel(x.Spec.Selector)
	case *appsv1.StatefulSet:
		w.replicas, w.template, w.selector = count(x.Spec.Replicas), &x.Spec.Template, sel(x.Spec.Selector)
	case *appsv1.DaemonSet:
		w.perNode, w.template, w.selector = true, &x.Spec.Template, sel(x.Spec.Selector)
	case *batchv1.Job:
		w.replicas, w.template, w.selector = count(x.Spec.Parallelism), &x.Spec.Template, sel(x.Spec.Selector)
		if x.Spec.Selector == nil {
			w.selector = labels.SelectorFromSet(x.Spec.Template.Labels)
		}
	case *corev1.Pod:
		w.replicas = 1
		w.template = &corev1.PodTemplateSpec{ObjectMeta: x.ObjectMeta, Spec: x.Spec}
		w.selector = labels.Nothing()
	default:
		return nil, false
	}
	return w, true
}

// fitLine is the scheduling preview of one workload.
type fitLine struct {
	key     string
	pods    int
	unfit   int
	reason  string
	request string
}

// previewScheduling answers "would the new pods fit?" for a diff: the
// cluster's nodes and running pods come from the API; the pods of changed
// and removed workloads leave, the pods the newer side wants arrive, and the
// scheduler places them in one pass, as the controller would.
func previewScheduling(ctx context.Context, c *client.Client, from, to []*manifest.Object, changes []manifest.Change) ([]fitLine, int, int, error) {
	nodes, err := c.Nodes(ctx, client.Query{})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("nodes from the cluster: %w", err)
	}
	pods, err := c.Pods(ctx, client.PodQuery{})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("pods from the cluster: %w", err)
	}
	old := map[string]*manifest.Object{}
	for _, o := range from {
		old[o.Key()] = o
	}
	cur := map[string]*manifest.Object{}
	for _, o := range to {
		cur[o.Key()] = o
	}
	var leaving, arriving []*workload
	for _, ch := range changes {
		if o := old[ch.Key]; o != nil && ch.Op != "added" {
			if w, ok := workloadOf(o); ok {
				leaving = append(leaving, w)
			}
		}
		if o := cur[ch.Key]; o != nil && ch.Op != "removed" {
			if w, ok := workloadOf(o); ok {
				arriving = append(arriving, w)
			}
		}
	}
	bound := map[string][]*corev1.Pod{}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		mine := false
		for _, w := range leaving {
			if p.Namespace == w.ns && (w.selector.Matches(labels.Set(p.Labels)) || (strings.HasPrefix(w.key, "Pod/") && w.key == "Pod/"+p.Namespace+"/"+p.Name)) {
				mine = true
				break
			}
		}
		if !mine {
			bound[p.Spec.NodeName] = append(bound[p.Spec.NodeName], p)
		}
	}
	var sn []*scheduler.Node
	for i := range nodes.Items {
		sn = append(sn, scheduler.NewNode(&nodes.Items[i], bound[nodes.Items[i].Name]))
	}
	snap := scheduler.NewSnapshot(sn)
	var lines []fitLine
	for _, w := range arriving {
		var batch []*corev1.Pod
		n := w.replicas
		if w.perNode {
			n = 0
		}
		for i := range n {
			batch = append(batch, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", w.key, i), Namespace: w.ns, Labels: w.template.Labels},
				Spec:       *w.template.Spec.DeepCopy(),
			})
		}
		if w.perNode {
			// One per node its selector and tolerations allow: scheduled
			// pinned to each node, as the DaemonSet controller does.
			for _, nd := range nodes.Items {
				if !labels.SelectorFromSet(w.template.Spec.NodeSelector).Matches(labels.Set(nd.Labels)) {
					continue
				}
				spec := w.template.Spec.DeepCopy()
				spec.NodeName = nd.Name
				batch = append(batch, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: w.key + "-" + nd.Name, Namespace: w.ns, Labels: w.template.Labels}, Spec: *spec})
			}
		}
		line := fitLine{key: w.key, pods: len(batch), request: requestString(w.template)}
		for _, pl := range snap.Schedule(batch, scheduler.Options{}) {
			if pl.Node == "" {
				line.unfit++
				line.reason = pl.Reason
			}
		}
		lines = append(lines, line)
	}
	sort.Slice(lines, func(i, j int) bool { return lines[i].key < lines[j].key })
	return lines, len(nodes.Items), len(pods.Items), nil
}

func requestString(t *corev1.PodTemplateSpec) string {
	var cpu, mem int64
	for _, c := range t.Spec.Containers {
		cpu += c.Resources.Requests.Cpu().MilliValue()
		mem += c.Resources.Requests.Memory().Value()
	}
	if cpu == 0 && mem == 0 {
		return "no requests"
	}
	return fmt.Sprintf("cpu %dm, memory %dMi each", cpu, mem>>20)
}

// printScheduling prints the preview and reports whether every pod fits.
func printScheduling(w io.Writer, server string, lines []fitLine, nodes, pods int) bool {
	fmt.Fprintf(w, "Scheduling against %s (%d node(s), %d pod(s) running):\n", server, nodes, pods)
	if len(lines) == 0 {
		fmt.Fprintln(w, "  no workload changes pods")
		return true
	}
	ok := true
	for _, l := range lines {
		switch {
		case l.pods == 0:
			fmt.Fprintf(w, "  %s: no pods\n", l.key)
		case l.unfit == 0:
			fmt.Fprintf(w, "  %s: %d pod(s) fit (%s)\n", l.key, l.pods, l.request)
		default:
			ok = false
			fmt.Fprintf(w, "  %s: %d of %d pod(s) do not fit (%s): %s\n", l.key, l.unfit, l.pods, l.request, l.reason)
		}
	}
	return ok
}
