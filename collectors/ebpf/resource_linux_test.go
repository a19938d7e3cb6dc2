//go:build linux

package ebpf

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"

	"github.com/vigil-agent/vigil/collectors/workload"
)

// An HTTP span's resource carries the workload's attributes, the owner
// (k8s.deployment.name) and service.name included, as its metrics and log
// records do; a process outside any workload is named by its command.
func TestSpanResourceCarriesWorkload(t *testing.T) {
	a := pcommon.NewMap()
	resourceAttrs(a, &pendingRequest{pid: 42, comm: commOf("server"), wl: workload.Identity{Namespace: "shop", Pod: "web-5d4f-x2", PodUID: "u1",
		Container: "app", ContainerID: "abc", OwnerKind: "Deployment", OwnerName: "web"}}, "node-a")
	got := a.AsRaw()
	want := map[string]any{"k8s.namespace.name": "shop", "k8s.pod.name": "web-5d4f-x2", "k8s.pod.uid": "u1", "k8s.container.name": "app",
		"container.id": "abc", "k8s.deployment.name": "web", "service.name": "web", "process.pid": int64(42), "host.name": "node-a"}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (resource %v)", k, got[k], v, got)
		}
	}

	a = pcommon.NewMap()
	resourceAttrs(a, &pendingRequest{pid: 7, comm: commOf("curl")}, "")
	if got := a.AsRaw()["service.name"]; got != "curl" {
		t.Errorf("service.name of a bare process = %v, want curl", got)
	}
}

// commOf is a task's comm as the kernel events carry it.
func commOf(s string) [16]int8 {
	var c [16]int8
	for i := 0; i < len(s) && i < len(c)-1; i++ {
		c[i] = int8(s[i])
	}
	return c
}
