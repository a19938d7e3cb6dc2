package workload

import (
	"reflect"
	"testing"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

func TestPutAttributes(t *testing.T) {
	tests := []struct {
		name string
		id   Identity
		want map[string]any
	}{
		{"pod of a Deployment",
			Identity{Namespace: "shop", Pod: "web-5d4f-x2", Container: "app", ContainerID: "abc", PodUID: "uid-1", OwnerKind: "Deployment", OwnerName: "web"},
			map[string]any{"k8s.namespace.name": "shop", "k8s.pod.name": "web-5d4f-x2", "k8s.container.name": "app", "container.id": "abc",
				"k8s.pod.uid": "uid-1", "k8s.deployment.name": "web", "service.name": "web"}},
		{"StatefulSet", Identity{Namespace: "db", Pod: "pg-0", PodUID: "u", OwnerKind: "StatefulSet", OwnerName: "pg"},
			map[string]any{"k8s.namespace.name": "db", "k8s.pod.name": "pg-0", "k8s.pod.uid": "u", "k8s.statefulset.name": "pg", "service.name": "pg"}},
		{"CronJob", Identity{Pod: "backup-1-abc", OwnerKind: "CronJob", OwnerName: "backup"},
			map[string]any{"k8s.pod.name": "backup-1-abc", "k8s.cronjob.name": "backup", "service.name": "backup"}},
		{"owner kind without a convention keeps service.name",
			Identity{Pod: "x-1", OwnerKind: "Rollout", OwnerName: "x"},
			map[string]any{"k8s.pod.name": "x-1", "service.name": "x"}},
		{"bare pod: the pod name", Identity{Pod: "debug", Container: "sh"},
			map[string]any{"k8s.pod.name": "debug", "k8s.container.name": "sh", "service.name": "debug"}},
		{"systemd unit", Identity{SystemdUnit: "nginx.service"},
			map[string]any{"systemd.unit": "nginx.service", "service.name": "nginx"}},
		{"nothing known", Identity{CgroupPath: "/odd"}, map[string]any{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attrs := pcommon.NewMap()
			tt.id.PutAttributes(attrs)
			if got := attrs.AsRaw(); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("attributes\n got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestLabelsRoundTrip(t *testing.T) {
	id := Identity{Namespace: "shop", Pod: "web-1", Container: "app", ContainerID: "abc", PodUID: "u", SystemdUnit: "", OwnerKind: "Deployment", OwnerName: "web"}
	if len(id.Labels()) != len(LabelNames) {
		t.Fatalf("%d values for %d names", len(id.Labels()), len(LabelNames))
	}
	var back Identity
	for i, n := range LabelNames {
		if !IsLabel(n) || !back.SetLabel(n, id.Labels()[i]) {
			t.Errorf("%s is not a workload label", n)
		}
	}
	if back != id {
		t.Errorf("round trip: %+v, want %+v", back, id)
	}
	if IsLabel("cgroup") || back.SetLabel("cgroup", "x") {
		t.Error("cgroup taken for a workload label")
	}
}
