package main

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
)

// exeRss is the resident kB of this process's read-only mappings of its
// executable, read from /proc/self/smaps.
func exeRss(t *testing.T) int64 {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var kb int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && len(fields[1]) == 4 {
			in = len(fields) == 6 && fields[5] == exe && fields[1][1] == '-'
			continue
		}
		if in && len(fields) >= 2 && fields[0] == "Rss:" {
			n, _ := strconv.ParseInt(fields[1], 10, 64)
			kb += n
		}
	}
	return kb
}

// The test binary's own start-up pages are released, and the process keeps
// running code and reading tables from them afterwards (they fault back in).
func TestReleaseStartupPages(t *testing.T) {
	before := exeRss(t)
	released := releaseStartupPages()
	after := exeRss(t)
	if released <= 0 || released>>10 < before/2 {
		t.Fatalf("released %d bytes of %d kB resident", released, before)
	}
	if after >= before/2 {
		t.Errorf("read-only executable pages resident: %d kB before, %d kB after", before, after)
	}
	// Code and read-only data still work: run a command through Main.
	var out strings.Builder
	if code := Main([]string{"config", "default"}, &out, &out); code != 0 || !strings.Contains(out.String(), "\nrules:\n") {
		t.Fatalf("after release: exit %d, %q", code, out.String())
	}
	t.Logf("executable read-only pages: %d kB resident before, %d kB after (released %d kB)", before, after, released>>10)
}
