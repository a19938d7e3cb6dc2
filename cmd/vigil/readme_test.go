package main

import (
	"bytes"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
)

// Every command the binary has is in the README's command list, and the
// list names no command the binary lacks.
func TestReadmeListsEveryCommand(t *testing.T) {
	// kingpin prints --help-long on the process's stdout.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout := os.Stdout
	os.Stdout = w
	var out, errb bytes.Buffer
	Main([]string{"--help-long"}, &out, &errb)
	os.Stdout = stdout
	w.Close()
	printed, _ := io.ReadAll(r)
	help := string(printed) + out.String() + errb.String()
	// kingpin lists each command at the start of a line under "Commands:".
	_, cmds, ok := strings.Cut(help, "Commands:")
	if !ok {
		t.Fatalf("no command list in --help-long:\n%s", help)
	}
	have := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([a-z]+(?: [a-z]+)?)(?: [\[<]|$)`).FindAllStringSubmatch(cmds, -1) {
		if m[1] != "help" {
			have[m[1]] = true
		}
	}
	if len(have) < 5 {
		t.Fatalf("found only %v in:\n%s", have, cmds)
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, block, _ := strings.Cut(string(readme), "## Command line\n\n```\n")
	block, _, _ = strings.Cut(block, "```")
	listed := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^vigil ([a-z]+(?: [a-z]+)?)`).FindAllStringSubmatch(block, -1) {
		listed[m[1]] = true
	}
	for c := range have {
		if !listed[c] {
			t.Errorf("README's command list lacks vigil %s", c)
		}
	}
	for c := range listed {
		if !have[c] {
			t.Errorf("README lists vigil %s, which the binary does not have", c)
		}
	}
}
