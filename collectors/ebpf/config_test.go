package ebpf

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("default config: %v", err)
	}
	c := NewConfig()
	c.RingBufferBytes = 5000
	c.WakeupFill = 0
	c.PollInterval = time.Minute
	c.CgroupHierarchy = "v3"
	c.HTTPHeadWindows = 9
	c.Spans.SampleRatio = 1.5
	c.Spans.MaxPerSecond = -1
	c.HTTPUnansweredAfter = 0
	c.DNSPorts = []int{5353, 0, 1, 2, 3}
	c.DNSTimeout = time.Hour
	err := c.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, field := range []string{"ring_buffer_bytes", "wakeup_fill", "poll_interval", "cgroup_hierarchy",
		"http_head_windows", "spans.sample_ratio", "spans.max_per_second", "http_unanswered_after",
		"dns_ports", "dns_ports[1]", "dns_timeout"} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s: %v", field, err)
		}
	}
}
