package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/keelson/keelson/apiserver/client"
)

// getEndpoints prints the endpoint slices the controller keeps, by service
// (get endpoints, as kubectl prints Endpoints) or by slice.
func getEndpoints(cmd *cobra.Command, c *client.Client, kind string, args []string, ns string, o getOptions) error {
	list, err := c.EndpointSlices(cmd.Context(), client.Query{Namespace: ns})
	if err != nil {
		return err
	}
	sel := labels.Everything()
	if o.selector != "" {
		if sel, err = labels.Parse(o.selector); err != nil {
			return fmt.Errorf("-l %q: %w", o.selector, err)
		}
	}
	var slices []discoveryv1.EndpointSlice
	for _, s := range list.Items {
		svc := s.Labels[discoveryv1.LabelServiceName]
		if len(args) == 2 && svc != args[1] && s.Name != args[1] {
			continue
		}
		if !sel.Matches(labels.Set(s.Labels)) {
			continue
		}
		slices = append(slices, s)
	}
	w := cmd.OutOrStdout()
	switch o.output {
	case "json", "yaml":
		return printStructured(w, o.output, map[string]any{"apiVersion": "v1", "kind": "List", "items": slices, "metadata": map[string]any{}})
	}
	if len(slices) == 0 {
		if len(args) == 2 {
			return fmt.Errorf("%s %q not found in namespace %s", strings.ToLower(kind), args[1], ns)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "No %s found.\n", strings.ToLower(kind))
		return nil
	}
	withNS := o.allNamespaces
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	prefix := ""
	if withNS {
		prefix = "NAMESPACE\t"
	}
	if kind == "EndpointSlice" {
		fmt.Fprintln(tw, prefix+"NAME\tADDRESSTYPE\tPORTS\tENDPOINTS\tNOT-READY")
		for _, s := range slices {
			var ports []string
			for _, p := range s.Ports {
				if p.Port != nil {
					ports = append(ports, strconv.Itoa(int(*p.Port)))
				}
			}
			ready, notReady := addresses(s, "")
			row := fmt.Sprintf("%s\t%s\t%s\t%s\t%d", s.Name, s.AddressType, orNone(strings.Join(ports, ",")), abbreviate(ready), len(notReady))
			if withNS {
				row = s.Namespace + "\t" + row
			}
			fmt.Fprintln(tw, row)
		}
		return tw.Flush()
	}
	// By service: the ready addresses with each port, as kubectl prints
	// Endpoints, and how many are not ready.
	type row struct {
		ns, name        string
		ready, notReady []string
	}
	bySvc := map[string]*row{}
	for _, s := range slices {
		name := s.Labels[discoveryv1.LabelServiceName]
		k := s.Namespace + "/" + name
		r := bySvc[k]
		if r == nil {
			r = &row{ns: s.Namespace, name: name}
			bySvc[k] = r
		}
		ports := []string{""}
		if len(s.Ports) > 0 {
			ports = nil
			for _, p := range s.Ports {
				if p.Port != nil {
					ports = append(ports, ":"+strconv.Itoa(int(*p.Port)))
				}
			}
		}
		for _, p := range ports {
			rd, nr := addresses(s, p)
			r.ready = append(r.ready, rd...)
			r.notReady = append(r.notReady, nr...)
		}
	}
	keys := make([]string, 0, len(bySvc))
	for k := range bySvc {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	fmt.Fprintln(tw, prefix+"NAME\tENDPOINTS\tNOT-READY")
	for _, k := range keys {
		r := bySvc[k]
		line := fmt.Sprintf("%s\t%s\t%s", r.name, abbreviate(r.ready), notReadyList(r.notReady))
		if withNS {
			line = r.ns + "\t" + line
		}
		fmt.Fprintln(tw, line)
	}
	return tw.Flush()
}

// addresses lists a slice's ready and not-ready addresses, each with suffix.
func addresses(s discoveryv1.EndpointSlice, suffix string) (ready, notReady []string) {
	for _, e := range s.Endpoints {
		ok := e.Conditions.Ready == nil || *e.Conditions.Ready
		for _, a := range e.Addresses {
			if ok {
				ready = append(ready, a+suffix)
			} else {
				notReady = append(notReady, a+suffix)
			}
		}
	}
	return ready, notReady
}

// abbreviate prints the first three addresses and how many more, as kubectl does.
func abbreviate(as []string) string {
	if len(as) == 0 {
		return "<none>"
	}
	if len(as) > 3 {
		return strings.Join(as[:3], ",") + fmt.Sprintf(" + %d more...", len(as)-3)
	}
	return strings.Join(as, ",")
}

func notReadyList(as []string) string {
	if len(as) == 0 {
		return "0"
	}
	return abbreviate(as)
}
