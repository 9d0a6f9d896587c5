package network

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// bridgeMasqChain is the name of the per-pod nat chain the bridge plugin creates
// for ipMasq (containernetworking/plugins utils.FormatChainName).
func bridgeMasqChain(network, containerID string) string {
	sum := sha512.Sum512([]byte(network + containerID))
	return fmt.Sprintf("CNI-%x", sum)[:28]
}

// portmapDNATChain is the name of the per-pod DNAT chain of the portmap plugin.
func portmapDNATChain(network, containerID string) string {
	sum := sha512.Sum512([]byte(network + containerID))
	return fmt.Sprintf("CNI-DN-%x", sum)[:28]
}

// removeMasqChain removes the bridge plugin's ipMasq chain of a pod and the
// POSTROUTING rules that jump to it. The bridge plugin of containernetworking-
// plugins 1.1 skips this on DEL when the pod's network namespace is already gone,
// which would leak the chain; Teardown calls this then. Absent chains are not an
// error.
func removeMasqChain(ctx context.Context, iptables, chain string) error {
	out, err := exec.CommandContext(ctx, iptables, "-w", "-t", "nat", "-L", "POSTROUTING", "-n", "--line-numbers").Output()
	if err != nil {
		return fmt.Errorf("list nat POSTROUTING: %w", err)
	}
	var nums []int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[1] == chain {
			if n, err := strconv.Atoi(f[0]); err == nil {
				nums = append(nums, n)
			}
		}
	}
	// Delete from the highest rule number down so that the numbers stay valid.
	for i := len(nums) - 1; i >= 0; i-- {
		if out, err := exec.CommandContext(ctx, iptables, "-w", "-t", "nat", "-D", "POSTROUTING", strconv.Itoa(nums[i])).CombinedOutput(); err != nil {
			return fmt.Errorf("delete nat POSTROUTING rule %d: %w: %s", nums[i], err, bytes.TrimSpace(out))
		}
	}
	if err := exec.CommandContext(ctx, iptables, "-w", "-t", "nat", "-n", "-L", chain).Run(); err != nil {
		return nil // no such chain
	}
	for _, op := range []string{"-F", "-X"} {
		if out, err := exec.CommandContext(ctx, iptables, "-w", "-t", "nat", op, chain).CombinedOutput(); err != nil {
			return fmt.Errorf("iptables %s %s: %w: %s", op, chain, err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// nodeMasqChain is the nat chain that masquerades what the node's pods send
// beyond the pod network. One chain for the node, written once, replaces the
// bridge plugin's ipMasq, which makes a chain and three rules for every pod:
// half the time of a pod's CNI ADD and DEL went to those iptables runs.
func nodeMasqChain(bridge string) string { return "KEELSON-MASQ-" + bridge }

// nodeMasqComment marks the POSTROUTING rule that jumps to the node's chain.
func nodeMasqComment(bridge string) string { return "keelson: masquerade the pods of " + bridge }

// nodeMasqRestore is the iptables-restore input (for --noflush) that writes
// the node's chain: traffic from the pod CIDR to anything but the pod CIDR
// and multicast leaves with the node's address, as the bridge plugin's
// ipMasq does per pod. Declaring the chain empties it, so the chain follows
// a changed pod CIDR.
func nodeMasqRestore(chain, podCIDR string) string {
	multicast := "224.0.0.0/4"
	if strings.Contains(podCIDR, ":") {
		multicast = "ff00::/8"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "*nat\n:%s - [0:0]\n", chain)
	fmt.Fprintf(&b, "-A %s ! -s %s -j RETURN\n", chain, podCIDR)
	fmt.Fprintf(&b, "-A %s -d %s -j RETURN\n", chain, podCIDR)
	fmt.Fprintf(&b, "-A %s -d %s -j RETURN\n", chain, multicast)
	fmt.Fprintf(&b, "-A %s -j MASQUERADE\n", chain)
	b.WriteString("COMMIT\n")
	return b.String()
}

// iptablesFor returns the iptables command of the pod CIDR's family.
func iptablesFor(podCIDR string) string {
	if strings.Contains(podCIDR, ":") {
		return "ip6tables"
	}
	return "iptables"
}

// ensureMasquerade writes the node's masquerade chain and the POSTROUTING
// rule to it, once per Manager; a failure is retried on the next pod.
func (m *Manager) ensureMasquerade(ctx context.Context) error {
	m.masqMu.Lock()
	defer m.masqMu.Unlock()
	if m.masqDone {
		return nil
	}
	ipt := iptablesFor(m.cfg.PodCIDR)
	if _, err := exec.LookPath(ipt); err != nil {
		return fmt.Errorf("masquerade pod traffic: %s not found: install the Debian package iptables", ipt)
	}
	chain, comment := nodeMasqChain(m.cfg.BridgeName), nodeMasqComment(m.cfg.BridgeName)
	restore := exec.CommandContext(ctx, ipt+"-restore", "-w", "--noflush")
	restore.Stdin = strings.NewReader(nodeMasqRestore(chain, m.cfg.PodCIDR))
	if out, err := restore.CombinedOutput(); err != nil {
		return fmt.Errorf("masquerade pod traffic: %s-restore: %w: %s", ipt, err, bytes.TrimSpace(out))
	}
	jump := []string{"-w", "-t", "nat", "", "POSTROUTING", "-m", "comment", "--comment", comment, "-j", chain}
	jump[3] = "-C"
	if exec.CommandContext(ctx, ipt, jump...).Run() != nil {
		jump[3] = "-A"
		if out, err := exec.CommandContext(ctx, ipt, jump...).CombinedOutput(); err != nil {
			return fmt.Errorf("masquerade pod traffic: %s %s: %w: %s", ipt, strings.Join(jump, " "), err, bytes.TrimSpace(out))
		}
	}
	m.masqDone = true
	return nil
}

// RemoveNode removes what a node's pod network keeps outside its pods and
// data directory: the bridge, the masquerade chain and the (empty) run
// directory of its network namespaces. `keelson down` and
// tests call it once the pods are torn down; absent parts are not an error.
func RemoveNode(cfg Config) error {
	cfg = cfg.withDefaults()
	var errs []error
	if out, err := exec.Command("ip", "link", "del", cfg.BridgeName).CombinedOutput(); err != nil && !bytes.Contains(out, []byte("Cannot find device")) {
		errs = append(errs, fmt.Errorf("delete bridge %s: %w: %s", cfg.BridgeName, err, bytes.TrimSpace(out)))
	}
	// The run directory of the network namespaces, and the node's directory
	// above the default one, go when empty.
	if cfg.RunDir != "" {
		_ = os.Remove(cfg.RunDir)
		if cfg.RunDir == filepath.Join("/run/keelson", cfg.Node, "netns") {
			_ = os.Remove(filepath.Dir(cfg.RunDir))
		}
	}
	chain, comment := nodeMasqChain(cfg.BridgeName), nodeMasqComment(cfg.BridgeName)
	for _, ipt := range []string{"iptables", "ip6tables"} {
		if _, err := exec.LookPath(ipt); err != nil {
			continue
		}
		if exec.Command(ipt, "-w", "-t", "nat", "-n", "-L", chain).Run() != nil {
			continue // no such chain
		}
		for exec.Command(ipt, "-w", "-t", "nat", "-D", "POSTROUTING", "-m", "comment", "--comment", comment, "-j", chain).Run() == nil {
		}
		for _, op := range []string{"-F", "-X"} {
			if out, err := exec.Command(ipt, "-w", "-t", "nat", op, chain).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s %s %s: %w: %s", ipt, op, chain, err, bytes.TrimSpace(out)))
			}
		}
	}
	return errors.Join(errs...)
}

// bridgeMasquerades tells whether a (cached) configuration list had the
// bridge plugin masquerade each pod itself, as Keelson's did before the
// node's chain: such pods' chains are removed by Teardown.
func bridgeMasquerades(list *libcni.NetworkConfigList) bool {
	for _, p := range list.Plugins {
		if p.Network.Type == "bridge" {
			var c struct {
				IPMasq bool `json:"ipMasq"`
			}
			return json.Unmarshal(p.Bytes, &c) == nil && c.IPMasq
		}
	}
	return false
}
