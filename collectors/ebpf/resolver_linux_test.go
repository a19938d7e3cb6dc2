//go:build linux

package ebpf

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// A cgroup made just after a walk is unknown to Identity (walks are
// throttled) but found by IdentityNow, which fast-path events use. The
// resolver only walks directories, so a plain directory tree stands in
// for the hierarchy here.
func TestResolverIdentityNowWalksAgain(t *testing.T) {
	root := t.TempDir()
	first := filepath.Join(root, "system.slice", "a.service")
	if err := os.MkdirAll(first, 0o755); err != nil {
		t.Fatal(err)
	}
	r := newCgroupResolver(root, nil)
	if wl := r.Identity(inode(t, first)); wl.SystemdUnit != "a.service" {
		t.Fatalf("first cgroup: %+v", wl)
	}
	second := filepath.Join(root, "system.slice", "b.service")
	if err := os.Mkdir(second, 0o755); err != nil {
		t.Fatal(err)
	}
	id := inode(t, second)
	r.lastWalk = time.Now().Add(time.Hour) // throttled, whatever the machine's speed
	if wl := r.Identity(id); wl.SystemdUnit != "" {
		t.Fatalf("Identity walked although throttled: %+v", wl)
	}
	if wl := r.IdentityNow(id); wl.SystemdUnit != "b.service" {
		t.Errorf("IdentityNow of a cgroup made after the last walk = %+v, want unit b.service", wl)
	}
}
