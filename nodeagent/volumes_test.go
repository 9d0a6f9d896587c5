package nodeagent

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	memdb "github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/store"
)

// removeAllAndCheckMounts removes every pod of the node and checks that the
// agent left no mount (tmpfs of memory emptyDirs and secret volumes) and no
// directory under its pods directory.
func (nd *node) removeAllAndCheckMounts() {
	t := nd.t
	t.Helper()
	entries, _ := os.ReadDir(nd.manifests)
	for _, e := range entries {
		_ = os.Remove(filepath.Join(nd.manifests, e.Name()))
	}
	nd.waitFor("all pods removed", func() string {
		pods, _ := nd.st.Snapshot().Pods(memdb.NewWatchSet(), store.PodQuery{})
		if len(pods) > 0 {
			return fmt.Sprintf("%d pods left", len(pods))
		}
		return ""
	}, 90*time.Second)
	podsDir := filepath.Join(nd.dataDir, "pods")
	if mps, err := mountPointsUnder(podsDir); err != nil || len(mps) > 0 {
		t.Errorf("mounts left under %s: %v %v", podsDir, mps, err)
	}
	if entries, _ := os.ReadDir(podsDir); len(entries) > 0 {
		t.Errorf("pod directories left: %v", entries)
	}
}

func (nd *node) podEvents(pod string) []*store.Event {
	ev, _ := nd.st.Snapshot().Events(memdb.NewWatchSet(), "Pod/default/"+pod)
	return ev
}

func (nd *node) waitLog(pod, container, want string, timeout time.Duration) string {
	nd.t.Helper()
	var l string
	nd.waitFor(fmt.Sprintf("log of %s/%s has %q", pod, container, want), func() string {
		l = nd.logs(pod, container, false)
		if !strings.Contains(l, want) {
			return "log: " + l
		}
		return ""
	}, timeout)
	return l
}

func waitingFor(reason string) func(corev1.ContainerStatus) bool {
	return func(cs corev1.ContainerStatus) bool {
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == reason
	}
}

const secretValue = "s3cr3t-VALUE-never-logged"

func TestVolumeTypesAndModes(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "h.txt"), []byte("from-host"), 0o644); err != nil {
		t.Fatal(err)
	}
	nd.write("config.yaml", `apiVersion: v1
kind: ConfigMap
metadata: {name: app-config}
data: {a: alpha, b: beta}
---
apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: `+secretValue+`, user: admin}
`)
	nd.write("pod.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels: {app: vols, tier: web}
  annotations: {note: "hello"}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - name: cm
    configMap: {name: app-config, defaultMode: 0640}
  - name: cmitems
    configMap:
      name: app-config
      items: [{key: a, path: sub/a.txt, mode: 0600}]
  - name: sec
    secret: {secretName: db, defaultMode: 0400}
  - name: dapi
    downwardAPI:
      items:
      - {path: labels, fieldRef: {fieldPath: metadata.labels}}
      - {path: name, fieldRef: {fieldPath: metadata.name}}
      - {path: mem, resourceFieldRef: {containerName: c, resource: limits.memory, divisor: 1Mi}}
  - name: proj
    projected:
      defaultMode: 0444
      sources:
      - configMap: {name: app-config, items: [{key: b, path: cfg/b}]}
      - secret: {name: db, items: [{key: user, path: user, mode: 0440}]}
      - downwardAPI: {items: [{path: ns, fieldRef: {fieldPath: metadata.namespace}}]}
  - name: mem
    emptyDir: {medium: Memory, sizeLimit: 8Mi}
  - name: host
    hostPath: {path: %s, type: Directory}
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    resources: {limits: {memory: 64Mi}}
    volumeMounts:
    - {name: cm, mountPath: /cm}
    - {name: cmitems, mountPath: /cmitems}
    - {name: sec, mountPath: /sec}
    - {name: dapi, mountPath: /dapi}
    - {name: proj, mountPath: /proj}
    - {name: mem, mountPath: /mem}
    - {name: host, mountPath: /host, readOnly: true}
    command:
    - sh
    - -c
    - |
      echo "cm a=$(cat /cm/a) mode=$(stat -L -c %%a /cm/a) b=$(cat /cm/b)"
      echo "cmitems $(cat /cmitems/sub/a.txt) mode=$(stat -L -c %%a /cmitems/sub/a.txt) keys=$(ls /cmitems | tr '\n' ,)"
      echo "sec mode=$(stat -L -c %%a /sec/password) user=$(cat /sec/user) len=$(wc -c < /sec/password)"
      echo "dapi name=$(cat /dapi/name) mem=$(cat /dapi/mem)"
      echo "labels:"; cat /dapi/labels; echo
      echo "proj b=$(cat /proj/cfg/b) user=$(cat /proj/user) umode=$(stat -L -c %%a /proj/user) bmode=$(stat -L -c %%a /proj/cfg/b) ns=$(cat /proj/ns)"
      echo "host $(cat /host/h.txt)"; touch /host/x 2>/dev/null && echo "host writable" || echo "host read-only"
      touch /cm/x 2>/dev/null && echo "cm writable" || echo "cm read-only"
      grep -E ' /(sec|mem|proj) ' /proc/mounts | awk '{print "mount", $2, $3, $4}'
      echo DONE
      sleep 3600
`, host))
	nd.waitState("vols", "c", 30*time.Second, running)
	l := nd.waitLog("vols", "c", "DONE", 20*time.Second)
	for _, want := range []string{
		"cm a=alpha mode=640 b=beta",
		"cmitems alpha mode=600 keys=sub,",
		"sec mode=400 user=admin len=25",
		"dapi name=vols mem=64",
		"app=\"vols\"\ntier=\"web\"",
		"proj b=beta user=admin umode=440 bmode=444 ns=default",
		"host from-host", "host read-only", "cm read-only",
		"mount /sec tmpfs ro,", "mount /mem tmpfs rw,", "mount /proj tmpfs ro,", "size=8192k",
	} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
	// On the node: the secret volume is a tmpfs mount, the configMap one is
	// an AtomicWriter directory.
	p := nd.pod("vols")
	if !isMountPoint(nd.agent.volumeDir(p, "sec")) {
		t.Errorf("secret volume %s is not a mount point", nd.agent.volumeDir(p, "sec"))
	}
	if target, err := os.Readlink(filepath.Join(nd.agent.volumeDir(p, "cm"), "..data")); err != nil || !strings.HasPrefix(target, "..20") {
		t.Errorf("..data of the configMap volume: %q %v", target, err)
	}
	if target, _ := os.Readlink(filepath.Join(nd.agent.volumeDir(p, "cm"), "a")); target != "..data/a" {
		t.Errorf("a -> %q, want ..data/a", target)
	}
	for _, ev := range nd.podEvents("vols") {
		if strings.Contains(ev.Message, secretValue) {
			t.Errorf("event shows the secret value: %s", ev.Message)
		}
	}
	nd.removeAllAndCheckMounts()
}

// TestFSGroupAndRunAsNonRoot runs a pod as a user of its own with an fsGroup and a
// supplementary group, as Helm charts for non-root images do: the groups are
// the process's, the secret it may only read through its group (mode 0400
// becomes 0440, group fsGroup), and what it writes to its emptyDirs belongs
// to the fsGroup (setgid directories). A pod with runAsNonRoot whose image
// runs as root is refused.
func TestFSGroupAndRunAsNonRoot(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("secret.yaml", `apiVersion: v1
kind: Secret
metadata: {name: fsg}
stringData: {token: `+secretValue+`}
`)
	nd.write("pod.yaml", `apiVersion: v1
kind: Pod
metadata: {name: fsg}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {runAsUser: 1000, runAsGroup: 1000, fsGroup: 2000, supplementalGroups: [3000]}
  volumes:
  - name: sec
    secret: {secretName: fsg, defaultMode: 0400}
  - name: data
    emptyDir: {}
  - name: mem
    emptyDir: {medium: Memory}
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    volumeMounts:
    - {name: sec, mountPath: /sec}
    - {name: data, mountPath: /data}
    - {name: mem, mountPath: /mem}
    command:
    - sh
    - -c
    - |
      echo "ids uid=$(id -u) gid=$(id -g) groups=$(id -G | tr ' ' ,)"
      echo "sec mode=$(stat -L -c %a /sec/token) group=$(stat -L -c %g /sec/token) len=$(wc -c < /sec/token)"
      for d in data mem; do
        mkdir /$d/sub && echo x > /$d/sub/f
        echo "$d mode=$(stat -c %a /$d) group=$(stat -c %g /$d) file-group=$(stat -c %g /$d/sub/f)"
      done
      echo DONE
      sleep 3600
`)
	// runAsNonRoot with an image that runs as root: refused, as kubelet
	// refuses it, with the reason and an event saying why.
	nd.write("root.yaml", `apiVersion: v1
kind: Pod
metadata: {name: asroot}
spec:
  securityContext: {runAsNonRoot: true}
  containers:
  - {name: c, image: keelson.test/busybox:1, imagePullPolicy: Never, command: [sleep, "3600"]}
`)
	nd.waitState("fsg", "c", 30*time.Second, running)
	if cs := nd.waitState("asroot", "c", 30*time.Second, waitingFor("CreateContainerConfigError")); !strings.Contains(cs.State.Waiting.Message, "image will run as root") {
		t.Errorf("waiting message %q does not say why", cs.State.Waiting.Message)
	}
	l := nd.waitLog("fsg", "c", "DONE", 20*time.Second)
	for _, want := range []string{
		"ids uid=1000 gid=1000 groups=1000,2000,3000",
		"sec mode=440 group=2000 len=25",
		"data mode=2777 group=2000 file-group=2000",
		"mem mode=2777 group=2000 file-group=2000",
	} {
		if !strings.Contains(l, want) {
			t.Errorf("log lacks %q:\n%s", want, l)
		}
	}
	nd.removeAllAndCheckMounts()
}

func TestConfigMapUpdateSeenInPlaceSubPathKeepsOld(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	cm := func(v string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web-config}\ndata: {msg: " + v + "}\n"
	}
	nd.write("cm.yaml", cm("v1"))
	nd.write("pod.yaml", `apiVersion: v1
kind: Pod
metadata: {name: web}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: cfg, configMap: {name: web-config}}
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    volumeMounts:
    - {name: cfg, mountPath: /cfg}
    - {name: cfg, mountPath: /sub/msg, subPath: msg}
    command: [sh, -c, 'while true; do echo "vol=$(cat /cfg/msg) sub=$(cat /sub/msg)"; sleep 0.2; done']
`)
	nd.waitState("web", "c", 30*time.Second, running)
	nd.waitLog("web", "c", "vol=v1 sub=v1", 10*time.Second)
	changed := time.Now()
	nd.write("cm.yaml", cm("v2"))
	l := nd.waitLog("web", "c", "vol=v2", 5*time.Second)
	t.Logf("update seen in the container after %s", time.Since(changed).Round(time.Millisecond))
	if !strings.Contains(l, "vol=v2 sub=v1") {
		t.Errorf("subPath mount changed too or the volume did not:\n%s", l)
	}
	if p := nd.pod("web"); p.Status.ContainerStatuses[0].RestartCount != 0 {
		t.Errorf("container restarted: %+v", p.Status.ContainerStatuses[0])
	}
	// The old timestamped directory is gone; one remains.
	dir := nd.agent.volumeDir(nd.pod("web"), "cfg")
	if m, _ := filepath.Glob(filepath.Join(dir, "..20*")); len(m) != 1 {
		t.Errorf("timestamped directories after the update: %v", m)
	}
	nd.removeAllAndCheckMounts()
}

func TestEmptyDirSharedAndSubPathEscapesRefused(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	host := t.TempDir()
	if err := os.Symlink("/", filepath.Join(host, "evil")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(host, "ok"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "ok", "f"), []byte("inside"), 0o644); err != nil {
		t.Fatal(err)
	}
	nd.write("shared.yaml", `apiVersion: v1
kind: Pod
metadata: {name: shared}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: scratch, emptyDir: {}}
  containers:
  - name: writer
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    volumeMounts: [{name: scratch, mountPath: /out}]
    command: [sh, -c, 'echo shared-data > /out/f; echo "mode=$(stat -c %a /out)"; sleep 3600']
  - name: reader
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    volumeMounts: [{name: scratch, mountPath: /in}, {name: scratch, mountPath: /part, subPath: a/b}]
    command: [sh, -c, 'until test -f /in/f; do sleep 0.1; done; echo "read $(cat /in/f)"; echo p > /part/p; ls /in/a/b; sleep 3600']
`)
	pod := func(name, subPath string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: h, hostPath: {path: %s}}
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    volumeMounts: [{name: h, mountPath: /x, subPath: %q}]
    command: [sh, -c, 'cat /x/f 2>/dev/null; ls /x; sleep 3600']
`, name, host, subPath)
	}
	nd.write("dotdot.yaml", pod("dotdot", "../x"))
	nd.write("symlink.yaml", pod("symlink", "evil"))
	nd.write("symlink2.yaml", pod("symlink2", "evil/etc"))
	nd.write("fine.yaml", pod("fine", "ok"))

	nd.waitState("shared", "writer", 30*time.Second, running)
	nd.waitState("shared", "reader", 30*time.Second, running)
	if l := nd.waitLog("shared", "writer", "mode=", 10*time.Second); !strings.Contains(l, "mode=777") {
		t.Errorf("emptyDir mode: %s", l)
	}
	nd.waitLog("shared", "reader", "read shared-data", 10*time.Second)
	nd.waitLog("shared", "reader", "p\n", 10*time.Second)

	for name, want := range map[string]string{"dotdot": `"../x"`, "symlink": `"evil"`, "symlink2": `"evil/etc"`} {
		cs := nd.waitState(name, "c", 30*time.Second, waitingFor("CreateContainerConfigError"))
		if !strings.Contains(cs.State.Waiting.Message, want) {
			t.Errorf("%s: message %q does not name the subPath %s", name, cs.State.Waiting.Message, want)
		}
	}
	nd.waitState("fine", "c", 30*time.Second, running)
	nd.waitLog("fine", "c", "inside", 10*time.Second)
	nd.removeAllAndCheckMounts()
}

func TestMissingConfigAndHostPathHoldThePod(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	missingDir := filepath.Join(t.TempDir(), "no-such-dir")
	nd.write("hp.yaml", fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: hp}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: h, hostPath: {path: %s, type: Directory}}]
  containers:
  - {name: c, image: keelson.test/busybox:1, imagePullPolicy: Never, command: [sleep, "3600"], volumeMounts: [{name: h, mountPath: /h}]}
`, missingDir))
	nd.write("late.yaml", `apiVersion: v1
kind: Pod
metadata: {name: late}
spec:
  terminationGracePeriodSeconds: 1
  volumes: [{name: cfg, configMap: {name: late-config}}]
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, 'echo "got $(cat /cfg/k)"; sleep 3600']
    volumeMounts: [{name: cfg, mountPath: /cfg}]
`)
	nd.write("late-env.yaml", `apiVersion: v1
kind: Pod
metadata: {name: late-env}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, 'echo "env=$LATE"; sleep 3600']
    env: [{name: LATE, valueFrom: {secretKeyRef: {name: late-secret, key: token}}}]
`)
	nd.write("optional.yaml", `apiVersion: v1
kind: Pod
metadata: {name: optional}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: cfg, configMap: {name: nothing-here, optional: true}}
  - {name: sec, secret: {secretName: nothing-here, optional: true}}
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    command: [sh, -c, 'echo "files=[$(ls /cfg)$(ls /sec)] opt=${OPT:-unset}"; sleep 3600']
    volumeMounts: [{name: cfg, mountPath: /cfg}, {name: sec, mountPath: /sec}]
    env: [{name: OPT, valueFrom: {configMapKeyRef: {name: nothing-here, key: k, optional: true}}}]
    envFrom: [{secretRef: {name: nothing-here, optional: true}}]
`)
	cs := nd.waitState("hp", "c", 30*time.Second, waitingFor("CreateContainerConfigError"))
	if !strings.Contains(cs.State.Waiting.Message, missingDir) {
		t.Errorf("hostPath message %q does not name %s", cs.State.Waiting.Message, missingDir)
	}
	cs = nd.waitState("late", "c", 30*time.Second, waitingFor("CreateContainerConfigError"))
	if !strings.Contains(cs.State.Waiting.Message, `configmap "late-config" not found`) {
		t.Errorf("missing configmap message: %q", cs.State.Waiting.Message)
	}
	hasEvent := func(pod, reason, text string) bool {
		for _, ev := range nd.podEvents(pod) {
			if ev.Reason == reason && strings.Contains(ev.Message, text) {
				return true
			}
		}
		return false
	}
	if !hasEvent("hp", "FailedMount", missingDir) || !hasEvent("late", "FailedMount", "late-config") {
		t.Errorf("FailedMount events missing: hp %v late %v", nd.podEvents("hp"), nd.podEvents("late"))
	}
	nd.waitState("optional", "c", 30*time.Second, running)
	nd.waitLog("optional", "c", "files=[] opt=unset", 10*time.Second)

	cs = nd.waitState("late-env", "c", 30*time.Second, waitingFor("CreateContainerConfigError"))
	if !strings.Contains(cs.State.Waiting.Message, `secret "late-secret" not found`) {
		t.Errorf("missing secret message: %q", cs.State.Waiting.Message)
	}

	// The config arrives: both pods start (at their next retry).
	nd.write("late-config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: late-config}\ndata: {k: here}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: late-secret}\nstringData: {token: "+secretValue+"}\n")
	nd.waitState("late", "c", 30*time.Second, running)
	nd.waitLog("late", "c", "got here", 10*time.Second)
	nd.waitState("late-env", "c", 30*time.Second, running)
	nd.waitLog("late-env", "c", "env="+secretValue, 10*time.Second)
	for _, ev := range nd.podEvents("late-env") {
		if strings.Contains(ev.Message, secretValue) {
			t.Errorf("event shows the secret value: %s", ev.Message)
		}
	}
	if cs := nd.pod("hp").Status.ContainerStatuses[0]; cs.State.Waiting == nil {
		t.Errorf("hostPath pod started: %+v", cs.State)
	}
	nd.removeAllAndCheckMounts()
}

func TestEnvFromConfigSecretsAndFields(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	nd.write("config.yaml", `apiVersion: v1
kind: ConfigMap
metadata: {name: env-config}
data: {mode: fast, level: "3", 1bad: "x"}
---
apiVersion: v1
kind: Secret
metadata: {name: env-secret}
stringData: {token: `+secretValue+`, 2bad: "yes"}
`)
	nd.write("pod.yaml", `apiVersion: v1
kind: Pod
metadata: {name: envs, labels: {app: envs}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    resources: {limits: {memory: 32Mi, cpu: 500m}}
    envFrom:
    - {prefix: CFG_, configMapRef: {name: env-config}}
    - {secretRef: {name: env-secret}}
    env:
    - {name: MODE, valueFrom: {configMapKeyRef: {name: env-config, key: mode}}}
    - {name: TOKEN, valueFrom: {secretKeyRef: {name: env-secret, key: token}}}
    - {name: COMBINED, value: "$(MODE)-$(CFG_level)-$(NOPE)"}
    - {name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}
    - {name: APP, valueFrom: {fieldRef: {fieldPath: "metadata.labels['app']"}}}
    - {name: MEM_MI, valueFrom: {resourceFieldRef: {resource: limits.memory, divisor: 1Mi}}}
    - {name: CPU_M, valueFrom: {resourceFieldRef: {resource: limits.cpu, divisor: 1m}}}
    - {name: REQ_CPU, valueFrom: {resourceFieldRef: {resource: requests.cpu}}}
    command: [sh, -c, 'env | sort; echo DONE; sleep 3600']
`)
	nd.waitState("envs", "c", 30*time.Second, running)
	l := nd.waitLog("envs", "c", "DONE", 10*time.Second)
	ip := nd.pod("envs").Status.PodIP
	if ip == "" {
		t.Fatal("no pod IP")
	}
	for _, want := range []string{
		"CFG_mode=fast", "CFG_level=3", "CFG_1bad=x", "token=" + secretValue, "MODE=fast", "TOKEN=" + secretValue,
		"COMBINED=fast-3-$(NOPE)", "POD_IP=" + ip + "\n", "APP=envs", "MEM_MI=32", "CPU_M=500", "REQ_CPU=1",
	} {
		if !strings.Contains(l, want) {
			t.Errorf("env lacks %q:\n%s", want, l)
		}
	}
	if strings.Contains(l, "2bad=") {
		t.Errorf("invalid variable name 2bad was set:\n%s", l)
	}
	found := false
	for _, ev := range nd.podEvents("envs") {
		if strings.Contains(ev.Message, secretValue) {
			t.Errorf("event shows the secret value: %s", ev.Message)
		}
		if ev.Reason == "InvalidEnvironmentVariableNames" && strings.Contains(ev.Message, "2bad") {
			found = true
		}
	}
	if !found {
		t.Errorf("no InvalidEnvironmentVariableNames event for 2bad: %v", nd.podEvents("envs"))
	}
	nd.removeAllAndCheckMounts()
}

// TestVolumesSurviveAgentRestart: an agent restart keeps the secret tmpfs
// (nothing is remounted over it) and a later ConfigMap update still reaches
// the adopted container in place.
func TestVolumesSurviveAgentRestart(t *testing.T) {
	t.Parallel()
	nd := newNode(t)
	nd.start()
	cm := func(v string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {msg: " + v + "}\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData: {k: v}\n"
	}
	nd.write("cm.yaml", cm("one"))
	nd.write("pod.yaml", `apiVersion: v1
kind: Pod
metadata: {name: keep}
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {name: cfg, configMap: {name: c}}
  - {name: sec, secret: {secretName: s}}
  containers:
  - name: c
    image: keelson.test/busybox:1
    imagePullPolicy: Never
    volumeMounts: [{name: cfg, mountPath: /cfg}, {name: sec, mountPath: /sec}]
    command: [sh, -c, 'while true; do echo "msg=$(cat /cfg/msg) sec=$(cat /sec/k)"; sleep 0.2; done']
`)
	nd.waitState("keep", "c", 30*time.Second, running)
	nd.waitLog("keep", "c", "msg=one sec=v", 10*time.Second)
	secDir := nd.agent.volumeDir(nd.pod("keep"), "sec")
	nd.stop()
	nd.write("cm.yaml", cm("two"))
	nd.start()
	after := nd.waitState("keep", "c", 30*time.Second, running)
	if after.RestartCount != 0 {
		t.Errorf("adopted container restarted: %d", after.RestartCount)
	}
	nd.waitLog("keep", "c", "msg=two sec=v", 10*time.Second)
	if mps, _ := mountPointsUnder(secDir); len(mps) != 1 {
		t.Errorf("mounts on the secret volume after the restart: %v", mps)
	}
	nd.removeAllAndCheckMounts()
}
