package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/keelson/keelson/ebpf"
	"github.com/keelson/keelson/nodeagent"
	"github.com/keelson/keelson/nodeagent/network"
	"github.com/keelson/keelson/nodeagent/runtime"
)

type upOptions struct {
	controller controllerOptions
	agent      agentOptions
}

func newUpCmd() *cobra.Command {
	var o upOptions
	var dataDir string
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "up --repo URL|PATH [--branch B] [--path P] [--data-dir D]",
		Short: "Run a one-node cluster from a Git repository: controller, agent and containerd",
		Long: `Up runs the controller, a local agent and a private containerd in one process
tree on this machine. The controller follows the repository; the agent joins
it and runs the pods the scheduler gives it. Image archives (OCI or docker
save) in DATA_DIR/images and DATA_DIR/agent/images are imported at start.

A remote repository takes the controller's credential flags (--username,
--password-file, --password-env, --ssh-key, --known-hosts, --ssh-user):
credentials never come from flags, so --repo holds no password or token.

Ctrl-C stops Keelson and leaves the containers running, as kubelet does;
'keelson down' stops and removes everything 'up' started.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.controller.dataDir = filepath.Join(dataDir, "controller")
			o.agent.dataDir = filepath.Join(dataDir, "agent")
			return runUp(cmd.Context(), o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.controller.src.URL, "repo", "", "Git repository URL or local path (required)")
	f.StringVar(&o.controller.src.Branch, "branch", "", "branch to follow (default: the remote's HEAD)")
	f.StringVar(&o.controller.src.Path, "path", "", "sub-directory of the repository holding the manifests")
	addAuthFlags(f, &o.controller.src.Auth)
	f.StringVar(&dataDir, "data-dir", defaultDataDir(), "where Keelson keeps its state")
	f.StringVar(&o.controller.listen, "listen", "127.0.0.1:7676", "address of the controller's API")
	f.StringVar(&o.agent.listen, "agent-listen", "127.0.0.1:7677", "address of the agent's API")
	f.StringVar(&o.agent.name, "node-name", host, "name of this node")
	f.StringVar(&o.controller.clusterCIDR, "cluster-cidr", "10.244.0.0/16", "pod addresses: the node gets the first /24 (change it when 10.244.0.0/24 is taken here)")
	f.DurationVar(&o.controller.interval, "interval", 30*time.Second, "how often to poll a remote repository")
	f.StringVar(&o.controller.logLevel, "log-level", "info", "debug, info, warn or error")
	addServiceFlags(f, &o.controller)
	f.BoolVar(&o.controller.autoRollback, "auto-rollback", false, "return a Deployment whose rollout fails to its previous template")
	f.BoolVar(&o.controller.writeNotes, "write-notes", false, "write what became of each commit into the repository's refs/notes/keelson (git log --notes=keelson)")
	f.BoolVar(&o.agent.serviceLB, "service-lb", true, "load-balance Services in the kernel with eBPF and serve cluster DNS")
	f.IntVar(&o.agent.ingressHTTP, "ingress-http-port", 80, "port the node serves Ingresses on over HTTP (0: no Ingress)")
	f.IntVar(&o.agent.ingressHTTPS, "ingress-https-port", 443, "port the node serves Ingresses on over HTTPS")
	_ = cmd.MarkFlagRequired("repo")
	return cmd
}

func runUp(ctx context.Context, o upOptions, stdout, stderr io.Writer) error {
	c, a := o.controller, o.agent
	if c.clusterCIDR == "" {
		c.clusterCIDR = "10.244.0.0/16"
	}
	c.evictionTimeout, c.leaseTimeout = 60*time.Second, 40*time.Second
	a.logLevel = c.logLevel
	a.sharedProcess = true
	a.imageDirs = append(a.imageDirs, filepath.Join(filepath.Dir(a.dataDir), "images"))
	if a.clusterDomain == "" {
		a.clusterDomain = "cluster.local"
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	listening := make(chan string, 1)
	c.onListen = func(addr string) { listening <- addr }
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	wg.Go(func() {
		if err := runController(ctx, c, stderr); err != nil {
			errc <- fmt.Errorf("controller: %w", err)
		}
		cancel()
	})
	var addr string
	select {
	case addr = <-listening:
	case err := <-errc:
		wg.Wait()
		return err
	}
	a.server = "http://" + addr
	a.tokenFile = filepath.Join(c.dataDir, "agent-token")
	agentUp := make(chan string, 1)
	a.onListen = func(addr string) { agentUp <- addr }
	wg.Go(func() {
		if err := runAgent(ctx, a, stderr); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("agent: %w", err)
		}
		cancel()
	})
	select {
	case agentAddr := <-agentUp:
		fmt.Fprintf(stdout, "Keelson is up: the cluster API is http://%s (the node's is http://%s).\n", addr, agentAddr)
		fmt.Fprintf(stdout, "It runs %s", c.src)
		if c.src.Path != "" {
			fmt.Fprintf(stdout, " (path %s)", c.src.Path)
		}
		fmt.Fprintf(stdout, " on node %s; images are imported from %s.\n", a.name, filepath.Join(filepath.Dir(a.dataDir), "images"))
		fmt.Fprintf(stdout, "Try: keelson status; keelson get pods -A -o wide. Ctrl-C stops Keelson; containers keep running.\n")
	case <-ctx.Done():
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func newDownCmd() *cobra.Command {
	var dataDir, node string
	host, _ := os.Hostname()
	cmd := &cobra.Command{
		Use:   "down [--data-dir D]",
		Short: "Stop and remove everything 'keelson up' started",
		Long: `Down stops every container 'keelson up' ran, removes their network
namespaces, IP allocations and bridge, stops the private containerd and
removes Keelson's state, keeping the image archives in DATA_DIR/images and
DATA_DIR/agent/images.
Run it after stopping 'keelson up'.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDown(cmd.Context(), dataDir, node, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", defaultDataDir(), "the data directory 'up' used")
	cmd.Flags().StringVar(&node, "node-name", host, "the node name 'up' used")
	return cmd
}

func runDown(ctx context.Context, dataDir, node string, out io.Writer) error {
	agentDir := filepath.Join(dataDir, "agent")
	if _, err := os.Stat(agentDir); errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(out, "Nothing to do: %s does not exist.\n", agentDir)
		return nil
	}
	if err := downNode(ctx, agentDir, node, out); err != nil {
		return err
	}
	_ = os.RemoveAll(filepath.Join(dataDir, "controller"))
	fmt.Fprintf(out, "Removed Keelson's state under %s (image archives kept).\n", dataDir)
	return nil
}

// downNode stops and removes everything an agent with data directory
// agentDir ran as node: containers, pod networks and the bridge, the
// service load balancer's programs, LoadBalancer addresses and pod
// routes, and its state but for image archives. The agent must be stopped.
func downNode(ctx context.Context, agentDir, node string, out io.Writer) error {
	d, err := runtime.StartDaemon(ctx, filepath.Join(agentDir, "containerd"), nil)
	if err != nil {
		return err
	}
	rt, err := runtime.Connect(ctx, d.Socket(), "keelson", nil)
	if err != nil {
		_ = d.Stop()
		return err
	}
	infos, err := rt.List(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, in := range infos {
		wg.Go(func() {
			_ = rt.Stop(ctx, in.ID, 10*time.Second)
			if err := rt.Remove(ctx, in.ID); err != nil {
				fmt.Fprintf(out, "remove container %s: %v\n", in.ID, err)
			}
		})
	}
	wg.Wait()
	fmt.Fprintf(out, "Stopped and removed %d container(s).\n", len(infos))
	_ = rt.Close()
	_ = d.Stop()
	if m, err := network.New(network.Config{Node: node, DataDir: filepath.Join(agentDir, "network"), PodCIDR: "10.244.0.0/24"}, nil); err == nil {
		sbs, _ := m.Sandboxes()
		for _, sb := range sbs {
			if err := m.Teardown(ctx, sb.Pod); err != nil {
				fmt.Fprintf(out, "tear down network of %s: %v\n", sb.Pod, err)
			}
		}
		_ = m.Close()
		fmt.Fprintf(out, "Removed %d pod network(s).\n", len(sbs))
	}
	if err := network.RemoveNode(network.Config{Node: node}); err != nil {
		fmt.Fprintf(out, "remove the pod network: %v\n", err)
	}
	if err := ebpf.Unpin(ebpf.Config{Node: node}); err != nil {
		fmt.Fprintf(out, "remove the service load balancer: %v\n", err)
	}
	if err := nodeagent.RemoveLBAddresses(); err != nil {
		fmt.Fprintf(out, "remove LoadBalancer addresses: %v\n", err)
	}
	if err := nodeagent.RemoveRoutes(); err != nil {
		fmt.Fprintf(out, "remove pod routes: %v\n", err)
	}
	entries, _ := os.ReadDir(agentDir)
	for _, e := range entries {
		if e.Name() != "images" {
			_ = os.RemoveAll(filepath.Join(agentDir, e.Name()))
		}
	}
	_ = os.Remove(filepath.Join("/run/keelson", node, "netns"))
	_ = os.Remove(filepath.Join("/run/keelson", node))
	return nil
}
