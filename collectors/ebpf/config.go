package ebpf

import (
	"errors"
	"fmt"
	"time"

	"github.com/vigil-agent/vigil/component"
)

// Name is the collector's name: its configuration key under collectors:
// and its collector label value.
const Name = "ebpf"

// ProgramsConfig switches each group of programs on or off.
type ProgramsConfig struct {
	// TCP is the connection lifecycle (sock/inet_sock_set_state).
	TCP bool `yaml:"tcp"`
	// TCPRetransmits counts retransmitted segments (tcp/tcp_retransmit_skb).
	TCPRetransmits bool `yaml:"tcp_retransmits"`
	// TCPResets counts resets sent and received (tcp/tcp_send_reset,
	// tcp/tcp_receive_reset).
	TCPResets bool `yaml:"tcp_resets"`
	// Process is process exec and exit (sched/sched_process_exec,
	// sched/sched_process_exit).
	Process bool `yaml:"process"`
	// OOM is OOM kills (oom/mark_victim).
	OOM bool `yaml:"oom"`
	// HTTP is HTTP/1.x requests from the read/write syscall tracepoints.
	HTTP bool `yaml:"http"`
	// Cgroups follows cgroup creation and removal (cgroup/cgroup_mkdir,
	// cgroup/cgroup_rmdir) so that processes of a cgroup removed right
	// after they exit (a container crashing at start) keep their workload.
	Cgroups bool `yaml:"cgroups"`
	// TLS takes the plaintext of Go's crypto/tls and of OpenSSL (SSL_read,
	// SSL_write) with uprobes, so HTTPS, and PostgreSQL and Redis over
	// TLS, are seen as their protocols; it needs HTTP on.
	TLS bool `yaml:"tls"`
}

// SpansConfig is the sampling of HTTP spans. Metrics count every request
// whatever is sampled.
type SpansConfig struct {
	// SampleRatio is the share of requests without a traceparent (root
	// requests) that become spans, decided by their trace ID (0 to 1).
	SampleRatio float64 `yaml:"sample_ratio"`
	// MaxPerSecond caps the spans of root requests per second (0: no cap).
	// Spans of requests whose traceparent says sampled, and error spans,
	// are exported whatever the cap.
	MaxPerSecond int `yaml:"max_per_second"`
	// LinkClientsByThread makes a client request written by the thread
	// that is serving a request (read on that thread and not yet answered,
	// the only one in flight there) a child of that server span.
	LinkClientsByThread bool `yaml:"link_clients_by_thread"`
}

// Config is the collectors.ebpf section.
type Config struct {
	// Programs switches program groups on or off; all are on by default.
	Programs ProgramsConfig `yaml:"programs"`
	// RingBufferBytes sizes the ring buffer for TCP and process events
	// (a power of two, at least one page).
	RingBufferBytes int `yaml:"ring_buffer_bytes"`
	// HTTPRingBufferBytes sizes the ring buffer for HTTP events.
	HTTPRingBufferBytes int `yaml:"http_ring_buffer_bytes"`
	// WakeupFill is how full (0 to 1) a ring buffer gets with unread events
	// before the reader is woken, rounded down to a power of two of bytes;
	// the reader also wakes each PollInterval, and fast-path events (OOM
	// kills, failed processes) wake it at once. 1: only those.
	WakeupFill float64 `yaml:"wakeup_fill"`
	// PollInterval is how long the reader sleeps before it collects
	// events submitted without a wake-up; after a second with no event it
	// sleeps longer, up to a second (quietPoll).
	PollInterval time.Duration `yaml:"poll_interval"`
	// MaxTrackedSockets bounds the kernel map of sockets being followed.
	MaxTrackedSockets int `yaml:"max_tracked_sockets"`
	// MaxSeries caps the distinct label sets of each metric family keyed by
	// workload and destination (or route); further ones are counted in an
	// overflow series.
	MaxSeries int `yaml:"max_series"`
	// MaxRoutes caps distinct HTTP routes across all workloads.
	MaxRoutes int `yaml:"max_routes"`
	// MaxPendingRequests bounds HTTP requests waiting for their response.
	MaxPendingRequests int `yaml:"max_pending_requests"`
	// MaxTLSTargets caps the executables and libraries the TLS uprobes
	// are attached to at once (each Go executable using crypto/tls, each
	// libssl); processes of further ones are counted not covered
	// (vigil_ebpf_tls_uncovered_processes{reason="limit"}).
	MaxTLSTargets int `yaml:"max_tls_targets"`
	// HTTPUnansweredAfter is how long a server request may wait for its
	// response before it is counted in
	// vigil_http_server_requests_unanswered_total (once per request): a
	// replica that reads requests and never answers them.
	HTTPUnansweredAfter time.Duration `yaml:"http_unanswered_after"`
	// HTTPHangAfter is how long a server request may wait for its
	// response before it counts as evidence that its workload does not
	// answer (rules.evidence; once per request, and the request counts as
	// answered too if its answer comes later).
	HTTPHangAfter time.Duration `yaml:"http_hang_after"`
	// HTTPSlowAfter is the duration past which an answered request (server
	// or client side) counts as slow in the evidence for latency alerts.
	HTTPSlowAfter time.Duration `yaml:"http_slow_after"`
	// EvidenceInterval is how often request and connect outcomes are
	// handed to the rules engine's evidence detector (rules.evidence).
	EvidenceInterval time.Duration `yaml:"evidence_interval"`
	// HTTPHook chooses where HTTP is seen: socket (the sock/sock_send_length
	// and sock/sock_recv_length tracepoints, Linux 6.4+, the cheaper path:
	// they fire only for socket I/O and hand over the socket), syscalls (the
	// read/write family's syscall tracepoints, any kernel), or auto (socket
	// where the kernel has it, else syscalls).
	HTTPHook string `yaml:"http_hook"`
	// HTTPHeadWindows is how many windows of 511 bytes of a request head
	// the kernel sends (1 to 8): headers such as traceparent are found in
	// the first HTTPHeadWindows*511 bytes of the read or write.
	HTTPHeadWindows int `yaml:"http_head_windows"`
	// Spans chooses which HTTP requests become spans.
	Spans SpansConfig `yaml:"spans"`
	// BPFStats enables the kernel's BPF run-time statistics (a small
	// system-wide cost) and exports each program's run time and count.
	BPFStats bool `yaml:"bpf_stats"`
	// CgroupHierarchy chooses the cgroup hierarchy workloads are identified
	// by: auto (unified if it is the only one, else the v1 memory
	// hierarchy), unified, or memory.
	CgroupHierarchy string `yaml:"cgroup_hierarchy"`
	// MountTracefs mounts tracefs at /sys/kernel/tracing when it is missing;
	// the syscall tracepoints (HTTP) need it.
	MountTracefs bool `yaml:"mount_tracefs"`
	// DNSPorts are UDP ports, besides 53, whose datagrams are looked at for
	// DNS (at most 4): a server's local port, or the remote port of a
	// client's connected socket. The kernel compares ports before reading
	// a datagram, so other UDP traffic costs a few compares.
	DNSPorts []int `yaml:"dns_ports"`
	// DNSTimeout is how long a DNS query may wait for its answer before it
	// is counted with rcode timeout.
	DNSTimeout time.Duration `yaml:"dns_timeout"`
}

// maxDNSPorts is the size of the kernel's dns_ports array (bpf/dns.h).
const maxDNSPorts = 4

// NewConfig returns the default configuration.
func NewConfig() *Config {
	return &Config{
		Programs:            ProgramsConfig{TCP: true, TCPRetransmits: true, TCPResets: true, Process: true, OOM: true, HTTP: true, Cgroups: true, TLS: true},
		RingBufferBytes:     1 << 20,
		HTTPRingBufferBytes: 1 << 20,
		WakeupFill:          0.25,
		PollInterval:        100 * time.Millisecond,
		MaxTrackedSockets:   65536,
		MaxSeries:           2000,
		MaxRoutes:           500,
		MaxPendingRequests:  16384,
		MaxTLSTargets:       64,
		HTTPUnansweredAfter: 10 * time.Second,
		HTTPHangAfter:       2 * time.Second,
		HTTPSlowAfter:       time.Second,
		EvidenceInterval:    250 * time.Millisecond,
		HTTPHook:            "auto",
		HTTPHeadWindows:     4,
		Spans:               SpansConfig{SampleRatio: 1, MaxPerSecond: 100, LinkClientsByThread: true},
		CgroupHierarchy:     "auto",
		MountTracefs:        true,
		DNSTimeout:          5 * time.Second,
	}
}

// Validate implements component.Config.
func (c *Config) Validate() error {
	var errs []error
	ring := func(field string, v int) {
		if v < 4096 || v&(v-1) != 0 {
			errs = append(errs, fmt.Errorf("%s: must be a power of two of at least 4096, got %d", field, v))
		}
	}
	ring("ring_buffer_bytes", c.RingBufferBytes)
	ring("http_ring_buffer_bytes", c.HTTPRingBufferBytes)
	positive := func(field string, v int) {
		if v < 1 {
			errs = append(errs, fmt.Errorf("%s: must be at least 1, got %d", field, v))
		}
	}
	if !(c.WakeupFill > 0 && c.WakeupFill <= 1) {
		errs = append(errs, fmt.Errorf("wakeup_fill: must be more than 0 and at most 1, got %v", c.WakeupFill))
	}
	positive("max_tracked_sockets", c.MaxTrackedSockets)
	positive("max_series", c.MaxSeries)
	positive("max_routes", c.MaxRoutes)
	positive("max_pending_requests", c.MaxPendingRequests)
	positive("max_tls_targets", c.MaxTLSTargets)
	if c.HTTPHeadWindows < 1 || c.HTTPHeadWindows > 8 {
		errs = append(errs, fmt.Errorf("http_head_windows: must be between 1 and 8, got %d", c.HTTPHeadWindows))
	}
	if !(c.Spans.SampleRatio >= 0 && c.Spans.SampleRatio <= 1) {
		errs = append(errs, fmt.Errorf("spans.sample_ratio: must be between 0 and 1, got %v", c.Spans.SampleRatio))
	}
	if c.Spans.MaxPerSecond < 0 {
		errs = append(errs, fmt.Errorf("spans.max_per_second: must be 0 (no cap) or more, got %d", c.Spans.MaxPerSecond))
	}
	if c.HTTPUnansweredAfter < time.Second || c.HTTPUnansweredAfter > time.Hour {
		errs = append(errs, fmt.Errorf("http_unanswered_after: must be between 1s and 1h, got %s", c.HTTPUnansweredAfter))
	}
	if c.HTTPHangAfter < 100*time.Millisecond || c.HTTPHangAfter > time.Hour {
		errs = append(errs, fmt.Errorf("http_hang_after: must be between 100ms and 1h, got %s", c.HTTPHangAfter))
	}
	if c.HTTPSlowAfter < time.Millisecond || c.HTTPSlowAfter > time.Hour {
		errs = append(errs, fmt.Errorf("http_slow_after: must be between 1ms and 1h, got %s", c.HTTPSlowAfter))
	}
	if c.EvidenceInterval < 10*time.Millisecond || c.EvidenceInterval > 5*time.Second {
		errs = append(errs, fmt.Errorf("evidence_interval: must be between 10ms and 5s, got %s", c.EvidenceInterval))
	}
	if c.PollInterval < time.Millisecond || c.PollInterval > 5*time.Second {
		errs = append(errs, fmt.Errorf("poll_interval: must be between 1ms and 5s, got %s", c.PollInterval))
	}
	if len(c.DNSPorts) > maxDNSPorts {
		errs = append(errs, fmt.Errorf("dns_ports: at most %d ports besides 53, got %d", maxDNSPorts, len(c.DNSPorts)))
	}
	for i, p := range c.DNSPorts {
		if p < 1 || p > 65535 {
			errs = append(errs, fmt.Errorf("dns_ports[%d]: must be a port (1-65535), got %d", i, p))
		}
	}
	if c.DNSTimeout < 100*time.Millisecond || c.DNSTimeout > time.Minute {
		errs = append(errs, fmt.Errorf("dns_timeout: must be between 100ms and 1m, got %s", c.DNSTimeout))
	}
	switch c.HTTPHook {
	case "auto", "socket", "syscalls":
	default:
		errs = append(errs, fmt.Errorf("http_hook: must be auto, socket or syscalls, got %q", c.HTTPHook))
	}
	switch c.CgroupHierarchy {
	case "auto", "unified", "memory":
	default:
		errs = append(errs, fmt.Errorf("cgroup_hierarchy: must be auto, unified or memory, got %q", c.CgroupHierarchy))
	}
	return errors.Join(errs...)
}

func init() { component.RegisterCollector(Name, true, NewConfig, newCollector) }
