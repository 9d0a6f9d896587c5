package nodeagent

import "os/exec"

// deleteLink removes a network interface a test's node created (its bridge).
func deleteLink(name string) error {
	return exec.Command("ip", "link", "del", name).Run()
}
