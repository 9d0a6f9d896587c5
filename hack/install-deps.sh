#!/usr/bin/env bash
# Installs the system packages Keelson's run and test commands need, when
# they are missing. Safe to run again: it installs nothing that is there.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
# command  package
check() { have "$1" || need+=("$2"); }

check git git
[ -x /usr/lib/git-core/git-daemon ] || need+=(git)
[ -x /usr/lib/git-core/git-http-backend ] || need+=(git)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
check ssh-keygen openssh-client
check make make
# The node agent: containerd with runc, the CNI plugins, and what the tests
# use (a registry, a static busybox for test images, iptables for portmap).
check containerd containerd
[ -x /usr/sbin/runc ] || need+=(runc)
[ -x /usr/lib/cni/bridge ] || need+=(containernetworking-plugins)
[ -x /usr/bin/docker-registry ] || need+=(docker-registry)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
check iptables iptables
check ip iproute2
check nsenter util-linux
# The Ingress proxy: curl is the outside client of its network namespace
# test; nginx and wrk are what its benchmark compares it with and loads it
# with.
check curl curl
[ -x /usr/sbin/nginx ] || need+=(nginx)
check wrk wrk

if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "install-deps: missing packages: ${need[*]} (run as root to install them)" >&2
		exit 1
	fi
	echo "install-deps: installing ${need[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

if ! have go; then
	echo "install-deps: Go 1.26 is needed (https://go.dev/dl); it is not on PATH" >&2
	exit 1
fi
