package agent

import (
	"strings"
	"testing"

	"github.com/vigil-agent/vigil/internal/capability"
)

func TestKeepCapabilitiesConfig(t *testing.T) {
	for _, tc := range []struct {
		yaml, err string
	}{
		{"global:\n  keep_capabilities: [bpf, CAP_PERFMON, cap_dac_read_search]\n", ""},
		{"global:\n  keep_capabilities: [all]\n", ""},
		{"global:\n  keep_capabilities: [bpf, sys_admn]\n", `global.keep_capabilities: unknown capability "sys_admn"`},
		{"global:\n  keep_capabilities: [all, bpf]\n", `global.keep_capabilities: "all" cannot be listed with other capabilities`},
	} {
		_, err := Load("vigil.yaml", []byte(tc.yaml))
		if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%q: err = %v, want %q", tc.yaml, err, tc.err)
		}
	}
	keep, drop := keepCapabilities([]string{"BPF", "cap_perfmon"})
	if !drop || keep != capability.Of(capability.BPF, capability.Perfmon) {
		t.Errorf("keep = %s, drop %v", keep, drop)
	}
	if _, drop := keepCapabilities([]string{"all"}); drop {
		t.Error("[all] drops")
	}
	if keep, _ := keepCapabilities(nil); !keep.Has(capability.BPF) || !keep.Has(capability.Perfmon) || keep.Has(capability.SysResource) {
		t.Errorf("default keep = %s", keep)
	}
	// What a started component uses at run time (the TLS discovery's
	// uprobes) joins the default set, not a configured one.
	capability.UseAtRunTime(capability.Of(capability.SysAdmin, capability.SysPtrace))
	if keep, _ := keepCapabilities(nil); !keep.Has(capability.SysAdmin) || !keep.Has(capability.SysPtrace) || keep.Has(capability.SysResource) {
		t.Errorf("default keep with the TLS discovery = %s", keep)
	}
	if keep, _ := keepCapabilities([]string{"bpf"}); keep != capability.Of(capability.BPF) {
		t.Errorf("keep_capabilities [bpf] with the TLS discovery = %s", keep)
	}
}
