package workload

import "testing"

func TestFromCgroupPath(t *testing.T) {
	const cid = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const uid = "1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718"
	uidSystemd := "1f2e3d4c_5b6a_7980_a1b2_c3d4e5f60718"
	tests := []struct {
		name string
		path string
		want Identity
	}{
		{"systemd driver containerd burstable",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSystemd + ".slice/cri-containerd-" + cid + ".scope",
			Identity{ContainerID: cid, Runtime: "containerd", PodUID: uid, QoSClass: "burstable"}},
		{"systemd driver cri-o guaranteed",
			"/kubepods.slice/kubepods-pod" + uidSystemd + ".slice/crio-" + cid + ".scope",
			Identity{ContainerID: cid, Runtime: "cri-o", PodUID: uid, QoSClass: "guaranteed"}},
		{"systemd driver besteffort docker",
			"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod" + uidSystemd + ".slice/docker-" + cid + ".scope",
			Identity{ContainerID: cid, Runtime: "docker", PodUID: uid, QoSClass: "besteffort"}},
		{"cgroupfs driver burstable",
			"/kubepods/burstable/pod" + uid + "/" + cid,
			Identity{ContainerID: cid, PodUID: uid, QoSClass: "burstable"}},
		{"cgroupfs driver guaranteed",
			"/kubepods/pod" + uid + "/" + cid,
			Identity{ContainerID: cid, PodUID: uid, QoSClass: "guaranteed"}},
		{"pod slice without container",
			"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod" + uidSystemd + ".slice",
			Identity{PodUID: uid, QoSClass: "burstable"}},
		{"plain docker cgroupfs", "/docker/" + cid, Identity{ContainerID: cid, Runtime: "docker"}},
		{"plain docker systemd", "/system.slice/docker-" + cid + ".scope", Identity{ContainerID: cid, Runtime: "docker"}},
		{"systemd service", "/system.slice/nginx.service", Identity{SystemdUnit: "nginx.service"}},
		{"templated service", "/system.slice/system-getty.slice/getty@tty1.service", Identity{SystemdUnit: "getty@tty1.service"}},
		{"user service", "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service", Identity{SystemdUnit: "foo.service"}},
		{"cgroupfs driver below a parent cgroup",
			"/vigil-test-0a1b/kubepods/burstable/pod" + uid + "/" + cid,
			Identity{ContainerID: cid, PodUID: uid, QoSClass: "burstable"}},
		{"cri-o conmon scope", "/kubepods.slice/kubepods-pod" + uidSystemd + ".slice/crio-conmon-" + cid + ".scope",
			Identity{ContainerID: cid, Runtime: "cri-o", PodUID: uid, QoSClass: "guaranteed"}},
		{"qos slice only", "/kubepods.slice/kubepods-burstable.slice", Identity{QoSClass: "burstable"}},
		{"root", "/", Identity{}},
		{"unknown", "/vigil-test/job1", Identity{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FromCgroupPath(tt.path)
			tt.want.CgroupPath = tt.path
			if got != tt.want {
				t.Errorf("FromCgroupPath(%q)\n got %+v\nwant %+v", tt.path, got, tt.want)
			}
		})
	}
}

func TestIdentityString(t *testing.T) {
	cases := map[string]Identity{
		"default/web-1/app":      {Namespace: "default", Pod: "web-1", Container: "app", PodUID: "x"},
		"nginx.service":          {SystemdUnit: "nginx.service", CgroupPath: "/system.slice/nginx.service"},
		"container:0123456789ab": {ContainerID: "0123456789abcdef"},
		"/a/b":                   {CgroupPath: "/a/b"},
		"unknown":                {},
	}
	for want, id := range cases {
		if got := id.String(); got != want {
			t.Errorf("%+v.String() = %q, want %q", id, got, want)
		}
	}
}

func FuzzFromCgroupPath(f *testing.F) {
	f.Add("/kubepods/burstable/pod1f2e3d4c-5b6a-7980-a1b2-c3d4e5f60718/abc")
	f.Add("/system.slice/a.service")
	f.Fuzz(func(t *testing.T, p string) {
		id := FromCgroupPath(p)
		if id.CgroupPath != p {
			t.Fatalf("CgroupPath not kept")
		}
		_ = id.String()
	})
}

type podNamer struct{}

func (podNamer) Enrich(id *Identity) { id.Pod = "web-1" }

func TestSwitchDelegatesToTheLastEnricher(t *testing.T) {
	var s Switch
	id := Identity{PodUID: "u"}
	s.Enrich(&id)
	if id.Pod != "" {
		t.Fatal("zero Switch changed the identity")
	}
	s.Set(podNamer{})
	s.Enrich(&id)
	if id.Pod != "web-1" {
		t.Fatalf("Pod = %q after Set", id.Pod)
	}
	s.Set(nil)
	id.Pod = ""
	s.Enrich(&id)
	if id.Pod != "" {
		t.Fatal("Set(nil) did not restore the no-op")
	}
}
