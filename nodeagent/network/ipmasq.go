package network

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha512"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
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
