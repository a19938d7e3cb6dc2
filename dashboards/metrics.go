package dashboards

// The metric names each dashboard reads, in one place per source. They are
// the names the components export (see docs/<component>.md); the tests
// check every name used in an expression against a running agent.

// Host collector (node_exporter's names).
const (
	mNodeCPUSeconds       = "node_cpu_seconds_total"
	mNodeLoad1            = "node_load1"
	mNodeMemAvailable     = "node_memory_MemAvailable_bytes"
	mNodeMemTotal         = "node_memory_MemTotal_bytes"
	mNodeSwapTotal        = "node_memory_SwapTotal_bytes"
	mNodeSwapFree         = "node_memory_SwapFree_bytes"
	mNodeVMStatMajFault   = "node_vmstat_pgmajfault"
	mNodeVMStatOOMKill    = "node_vmstat_oom_kill"
	mNodeDiskIOTime       = "node_disk_io_time_seconds_total"
	mNodeDiskIOWeighted   = "node_disk_io_time_weighted_seconds_total"
	mNodeDiskReadBytes    = "node_disk_read_bytes_total"
	mNodeDiskWrittenBytes = "node_disk_written_bytes_total"
	mNodeNetRxBytes       = "node_network_receive_bytes_total"
	mNodeNetTxBytes       = "node_network_transmit_bytes_total"
	mNodeNetRxDrop        = "node_network_receive_drop_total"
	mNodeNetTxDrop        = "node_network_transmit_drop_total"
	mNodeNetRxErrs        = "node_network_receive_errs_total"
	mNodeNetTxErrs        = "node_network_transmit_errs_total"
	mNodeFSAvail          = "node_filesystem_avail_bytes"
	mNodeFSSize           = "node_filesystem_size_bytes"
	mNodeFSFiles          = "node_filesystem_files"
	mNodeFSFilesFree      = "node_filesystem_files_free"
	mNodeFSDeviceError    = "node_filesystem_device_error"
	mNodeFSReadonly       = "node_filesystem_readonly"
	mNodeTime             = "node_time_seconds"
	mNodeBootTime         = "node_boot_time_seconds"
)

// Agent self-metrics.
const (
	mCollectorSuccess = "vigil_collector_success"
)

// cgroup collector.
const (
	mCgroupCPU        = "vigil_cgroup_cpu_usage_seconds_total"
	mCgroupThrottled  = "vigil_cgroup_cpu_throttled_seconds_total"
	mCgroupWorkingSet = "vigil_cgroup_memory_working_set_bytes"
	mCgroupRSS        = "vigil_cgroup_memory_rss_bytes"
	mCgroupLimit      = "vigil_cgroup_memory_limit_bytes"
	mCgroupOOMKills   = "vigil_cgroup_oom_kills_total"
)

// eBPF collector.
const (
	mProcessExecs      = "vigil_process_execs_total"
	mProcessExits      = "vigil_process_exits_total"
	mTCPAttempts       = "vigil_tcp_connect_attempts_total"
	mTCPFailures       = "vigil_tcp_connect_failures_total"
	mTCPConnectSeconds = "vigil_tcp_connect_duration_seconds" // histogram
	mTCPAccepts        = "vigil_tcp_accepts_total"
	mTCPActive         = "vigil_tcp_active_connections"
	mTCPLifetime       = "vigil_tcp_connection_duration_seconds" // histogram
	mTCPRetransmits    = "vigil_tcp_retransmits_total"
	mTCPResets         = "vigil_tcp_resets_total"
	mHTTPRequests      = "vigil_http_requests_total"
	mHTTPDuration      = "vigil_http_request_duration_seconds" // histogram
	mHTTPByDest        = "vigil_http_client_requests_by_destination_total"
	mHTTPByDestSeconds = "vigil_http_client_request_seconds_by_destination_total"
	mRedisRequests     = "vigil_redis_requests_total"
	mRedisDuration     = "vigil_redis_request_duration_seconds" // histogram
	mPostgresRequests  = "vigil_postgres_requests_total"
	mPostgresDuration  = "vigil_postgres_request_duration_seconds" // histogram
	mDNSRequests       = "vigil_dns_requests_total"
	mDNSDuration       = "vigil_dns_request_duration_seconds" // histogram
	mGRPCRequests      = "vigil_grpc_requests_total"
	mGRPCDuration      = "vigil_grpc_request_duration_seconds" // histogram
)

// The error codes the default dependency alerts count as the server's
// fault (rules/defaults/sources.rules.yml, docs/rules.md): the error
// ratio panels show what the alerts see. TestProtocolErrorCodesMatchTheRules
// keeps the two in step.
const (
	redisServerErrors    = "LOADING|BUSY|OOM|READONLY|MISCONF|MASTERDOWN|CLUSTERDOWN|NOREPLICAS"
	postgresServerErrors = "08|53|57|58|XX"
	dnsFailures          = "SERVFAIL|REFUSED|timeout"
	grpcServerErrors     = "UNAVAILABLE|INTERNAL|UNKNOWN|DATA_LOSS|DEADLINE_EXCEEDED|RESOURCE_EXHAUSTED"
)

// Logs collector.
const (
	mLogLines       = "vigil_log_lines_total"
	mLogMatches     = "vigil_log_matches_total"
	mLogsLinesRead  = "vigil_logs_lines_read_total"
	mLogsSentLines  = "vigil_logs_sent_lines_total"
	mLogsBufferSize = "vigil_logs_buffer_bytes"
)

// Healing engine.
const (
	mRemediations        = "vigil_remediations_total"
	mRemediationVetoes   = "vigil_remediation_vetoes_total"
	mRemediationDuration = "vigil_remediation_duration_seconds" // histogram
	// mRemediationDelay is the time from an alert's start to the action
	// taken for it (histogram).
	mRemediationDelay = "vigil_remediation_alert_to_action_seconds"
	mHealingAlerts    = "vigil_healing_alerts_received_total"
)
