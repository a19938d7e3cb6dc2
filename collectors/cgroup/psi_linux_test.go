package cgroup

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReadPSI parses pressure files as the kernel writes them, and reports
// damaged ones by file, line and field without losing the good line.
func TestReadPSI(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var errs []string
	r := newFileReader(func(file string, err error) { errs = append(errs, file+": "+err.Error()) })

	write("memory.pressure", "some avg10=0.00 avg60=0.00 avg300=0.00 total=105627\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=19571\n")
	some, full, found := r.readPSI(dir, "memory.pressure")
	if found != 3 || some != 0.105627 || full != 0.019571 || len(errs) != 0 {
		t.Errorf("good file: some %v full %v found %b errors %v", some, full, found, errs)
	}

	// cpu.pressure before Linux 5.13 has no "full" line.
	write("cpu.pressure", "some avg10=1.00 avg60=0.50 avg300=0.10 total=2000000\n")
	if some, _, found := r.readPSI(dir, "cpu.pressure"); found != 1 || some != 2 {
		t.Errorf("cpu without full: some %v found %b", some, found)
	}

	for _, bad := range []string{
		"some avg10=0.00 total=12x\nfull avg10=0.00 total=5\n",
		"some avg10=0.00\nfull avg10=0.00 total=5\n",
		"sum avg10=0.00 total=1\nfull total=5\n",
		"\x00\xff\nfull total=5",
	} {
		errs = nil
		write("memory.pressure", bad)
		_, full, found := r.readPSI(dir, "memory.pressure")
		if found != 2 || full != 5e-6 {
			t.Errorf("%q: the good full line was lost: full %v found %b", bad, full, found)
		}
		if len(errs) != 1 || !strings.Contains(errs[0], "memory.pressure:1") {
			t.Errorf("%q: errors %v, want one naming memory.pressure line 1", bad, errs)
		}
	}
}

// TestNofileLimit reads the soft open-files limit from a limits file and
// rejects damaged ones.
func TestNofileLimit(t *testing.T) {
	dir := t.TempDir()
	r := newFileReader(func(string, error) {})
	const head = "Limit                     Soft Limit           Hard Limit           Units     \n"
	for content, want := range map[string]uint64{
		head + "Max open files            1024                 524288               files     \n": 1024,
		head + "Max open files            unlimited            unlimited            files     \n": 0,
	} {
		if err := os.WriteFile(filepath.Join(dir, "limits"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := r.nofileLimit(dir); err != nil || got != want {
			t.Errorf("%q: %v, %v; want %v", content, got, err, want)
		}
	}
	for _, bad := range []string{head, head + "Max open files  lots  lots files\n", head + "Max open files"} {
		if err := os.WriteFile(filepath.Join(dir, "limits"), []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if got, err := r.nofileLimit(dir); err == nil {
			t.Errorf("%q: %v, want an error", bad, got)
		}
	}
	if _, err := r.nofileLimit(filepath.Join(dir, "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing process: %v", err)
	}
}
