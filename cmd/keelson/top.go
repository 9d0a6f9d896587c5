package main

import (
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newTopCmd() *cobra.Command {
	var namespace string
	var all bool
	cmd := &cobra.Command{
		Use:   "top nodes|pods",
		Short: "Show CPU and memory of nodes or pods, from their cgroups",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := apiClient(cmd)
			if err != nil {
				return err
			}
			u, err := c.Usage(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 8, 3, ' ', 0)
			switch args[0] {
			case "nodes", "node", "no":
				fmt.Fprintln(tw, "NAME\tCPU(cores)\tCPU%\tMEMORY(bytes)\tMEMORY%")
				sort.Slice(u.Items, func(i, j int) bool { return u.Items[i].Node < u.Items[j].Node })
				for _, n := range u.Items {
					cpuPct, memPct := int64(0), int64(0)
					if n.Cores > 0 {
						cpuPct = n.CPU / (n.Cores * 10)
					}
					if n.Total > 0 {
						memPct = n.Mem * 100 / n.Total
					}
					fmt.Fprintf(tw, "%s\t%dm\t%d%%\t%dMi\t%d%%\n", n.Node, n.CPU, cpuPct, n.Mem>>20, memPct)
				}
			case "pods", "pod", "po":
				if all {
					fmt.Fprint(tw, "NAMESPACE\t")
				}
				fmt.Fprintln(tw, "NAME\tCPU(cores)\tMEMORY(bytes)\tNODE")
				type row struct {
					ns, name, node string
					cpu, mem       int64
				}
				var rows []row
				for _, n := range u.Items {
					for _, p := range n.Pods {
						if all || p.Namespace == namespace {
							rows = append(rows, row{p.Namespace, p.Name, n.Node, p.CPU, p.Mem})
						}
					}
				}
				sort.Slice(rows, func(i, j int) bool {
					if rows[i].ns != rows[j].ns {
						return rows[i].ns < rows[j].ns
					}
					return rows[i].name < rows[j].name
				})
				for _, r := range rows {
					if all {
						fmt.Fprintf(tw, "%s\t", r.ns)
					}
					fmt.Fprintf(tw, "%s\t%dm\t%dMi\t%s\n", r.name, r.cpu, r.mem>>20, r.node)
				}
			default:
				return fmt.Errorf("top %q: want nodes or pods", args[0])
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&namespace, "namespace", "n", "default", "namespace")
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "pods of every namespace")
	return cmd
}
