package capability

import "testing"

func TestParseAndString(t *testing.T) {
	for _, s := range []string{"bpf", "BPF", "cap_bpf", "CAP_BPF"} {
		if c, err := Parse(s); err != nil || c != BPF {
			t.Errorf("Parse(%q) = %v, %v", s, c, err)
		}
	}
	if _, err := Parse("cap_nope"); err == nil {
		t.Error("unknown name accepted")
	}
	if got := Of(BPF, Perfmon, DACReadSearch).String(); got != "dac_read_search,perfmon,bpf" {
		t.Errorf("String = %q", got)
	}
	if Set(0).String() != "none" {
		t.Error("empty set")
	}
	// /proc/<pid>/status CapEff of BPF+PERFMON.
	if Of(BPF, Perfmon) != 0xc000000000 {
		t.Errorf("mask = %x", uint64(Of(BPF, Perfmon)))
	}
}
