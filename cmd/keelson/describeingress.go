package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	discoveryv1 "k8s.io/api/discovery/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/keelson/keelson/apiserver/api"
	"github.com/keelson/keelson/apiserver/client"
)

// describeIngressRules prints an Ingress's rules with each backend's ready
// endpoints, as kubectl describe does.
func describeIngressRules(ctx context.Context, w io.Writer, c *client.Client, raw json.RawMessage) error {
	var ing networkingv1.Ingress
	if err := json.Unmarshal(raw, &ing); err != nil {
		return err
	}
	list, err := c.Services(ctx, client.Query{Namespace: ing.Namespace})
	if err != nil {
		return err
	}
	svcs := map[string]*api.ServiceEndpoints{}
	for i := range list.Items {
		svcs[list.Items[i].Service.Name] = &list.Items[i]
	}
	backend := func(b *networkingv1.IngressBackend) string {
		if b == nil || b.Service == nil {
			return "<none>"
		}
		port := b.Service.Port.Name
		if port == "" {
			port = strconv.Itoa(int(b.Service.Port.Number))
		}
		s := svcs[b.Service.Name]
		if s == nil {
			return fmt.Sprintf("%s:%s (<error: service %s not found>)", b.Service.Name, port, b.Service.Name)
		}
		portName := ""
		found := false
		for _, p := range s.Service.Spec.Ports {
			if (b.Service.Port.Name != "" && p.Name == b.Service.Port.Name) || (b.Service.Port.Name == "" && p.Port == b.Service.Port.Number) {
				portName, found = p.Name, true
			}
		}
		if !found {
			return fmt.Sprintf("%s:%s (<error: the service has no such port>)", b.Service.Name, port)
		}
		var eps []string
		for _, sl := range s.Slices {
			eps = append(eps, readyAddrs(sl, portName)...)
		}
		return fmt.Sprintf("%s:%s (%s)", b.Service.Name, port, abbreviate(eps))
	}
	fmt.Fprintf(w, "Default backend:  %s\n", backend(ing.Spec.DefaultBackend))
	for _, t := range ing.Spec.TLS {
		fmt.Fprintf(w, "TLS:              %s terminates %s\n", t.SecretName, strings.Join(t.Hosts, ","))
	}
	fmt.Fprintln(w, "Rules:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "  Host\tPath\tBackends")
	fmt.Fprintln(tw, "  ----\t----\t--------")
	for _, r := range ing.Spec.Rules {
		host := r.Host
		if host == "" {
			host = "*"
		}
		if r.HTTP == nil {
			fmt.Fprintf(tw, "  %s\t\t%s\n", host, backend(ing.Spec.DefaultBackend))
			continue
		}
		for _, p := range r.HTTP.Paths {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", host, p.Path, backend(&p.Backend))
			host = ""
		}
	}
	return tw.Flush()
}

// readyAddrs lists a slice's ready endpoints as ip:port for the named port.
func readyAddrs(s discoveryv1.EndpointSlice, portName string) []string {
	port := ""
	for _, p := range s.Ports {
		if p.Port != nil && (p.Name == nil && portName == "" || p.Name != nil && *p.Name == portName) {
			port = ":" + strconv.Itoa(int(*p.Port))
		}
	}
	if port == "" {
		return nil
	}
	ready, _ := addresses(s, port)
	return ready
}
