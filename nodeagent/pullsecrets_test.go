package nodeagent

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/hashicorp/go-memdb"
	corev1 "k8s.io/api/core/v1"

	"github.com/keelson/keelson/internal/testimages"
	"github.com/keelson/keelson/internal/testregistry"
)

// A private image is pulled with the credentials of the pod's
// imagePullSecrets (a kubernetes.io/dockerconfigjson Secret beside the pod);
// without them the pull is refused and the pod waits in ImagePullBackOff;
// a pull secret that does not exist is a warning event. No password shows
// in any status or event.
func TestImagePullSecrets(t *testing.T) {
	t.Parallel()
	const user, pass = "alice", "pull-s3cret"
	reg := testregistry.Start(t, user, pass)
	image := reg.Host + "/private/busybox:1"
	reg.Push(t, testimages.Image(t, testimages.BusyboxRef), "private/busybox:1", &authn.Basic{Username: user, Password: pass})

	nd := newNode(t)
	nd.start()
	pod := func(name, secrets string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  terminationGracePeriodSeconds: 1
  imagePullSecrets: %s
  containers:
  - name: c
    image: %s
    command: [sh, -c, "trap 'exit 0' TERM; sleep 3600 & wait"]
`, name, secrets, image)
	}
	nd.write("anonymous.yaml", pod("anonymous", "[]"))
	nd.write("absent.yaml", pod("absent", "[{name: no-such-secret}]"))
	cs := nd.waitState("anonymous", "c", 60*time.Second, func(cs corev1.ContainerStatus) bool {
		return cs.State.Waiting != nil && cs.State.Waiting.Reason == "ImagePullBackOff"
	})
	if !strings.Contains(cs.State.Waiting.Message, image) {
		t.Errorf("pull refused: message %q does not name the image", cs.State.Waiting.Message)
	}
	nd.waitFor("a warning about the missing pull secret", func() string {
		ev, _ := nd.st.Snapshot().Events(memdb.NewWatchSet(), "Pod/default/absent")
		for _, e := range ev {
			if e.Reason == "FailedToRetrieveImagePullSecret" && strings.Contains(e.Message, `"no-such-secret" not found`) {
				return ""
			}
		}
		return fmt.Sprintf("events %v", ev)
	}, 30*time.Second)

	auth := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	config := base64.StdEncoding.EncodeToString(fmt.Appendf(nil, `{"auths":{%q:{"auth":%q}}}`, reg.Host, auth))
	nd.write("regcred.yaml", fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: regcred}
type: kubernetes.io/dockerconfigjson
data:
  .dockerconfigjson: %s
`, config))
	nd.write("private.yaml", pod("private", "[{name: regcred}]"))
	nd.waitState("private", "c", 60*time.Second, running)

	for _, name := range []string{"anonymous", "absent", "private"} {
		p := nd.pod(name)
		ev, _ := nd.st.Snapshot().Events(memdb.NewWatchSet(), "Pod/default/"+name)
		if text := fmt.Sprintf("%+v %+v", p.Status, ev); strings.Contains(text, pass) || strings.Contains(text, auth) {
			t.Errorf("pod %s: the registry password shows in its status or events", name)
		}
	}
}
