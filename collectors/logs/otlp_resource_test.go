package logs

import (
	"testing"

	"github.com/vigil-agent/vigil/collectors/workload"
)

// A pod's log records carry the workload's resource attributes, the owner
// (k8s.deployment.name) and service.name included, as its metrics and spans
// do.
func TestLogRecordsCarryWorkloadResource(t *testing.T) {
	f := newForwarder(nil, nil)
	tf := &tailFile{path: "/var/log/pods/shop_web-5d4f-x2_u1/app/0.log", src: &source{},
		id: workload.Identity{Namespace: "shop", Pod: "web-5d4f-x2", PodUID: "u1", Container: "app", ContainerID: "abc",
			OwnerKind: "Deployment", OwnerName: "web"}}
	f.add(tf, "node-a", 1, streamNone, levelUnknown, []byte("hello"))
	got := f.cur.ResourceLogs().At(0).Resource().Attributes().AsRaw()
	want := map[string]any{"k8s.node.name": "node-a", "k8s.namespace.name": "shop", "k8s.pod.name": "web-5d4f-x2", "k8s.pod.uid": "u1",
		"k8s.container.name": "app", "container.id": "abc", "k8s.deployment.name": "web", "service.name": "web"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (resource %v)", k, got[k], v, got)
		}
	}
}
