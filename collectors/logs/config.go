package logs

import (
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	promconfig "github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/vigil-agent/vigil/collectors/workload"
)

// Formats a log file can be read as.
const (
	FormatAuto   = "auto"   // detect per file from its first line
	FormatCRI    = "cri"    // containerd / CRI-O: "<RFC3339Nano> <stream> <P|F> <content>"
	FormatDocker = "docker" // Docker json-file: {"log":"…","stream":"…","time":"…"}
	FormatPlain  = "plain"  // one line is one record, read time is its timestamp
)

// Config is the `collectors.logs` section.
type Config struct {
	// Inputs are plain file globs with their own format and labels.
	Inputs []InputConfig `yaml:"inputs"`
	// PodLogs tails the kubelet's pod log folder.
	PodLogs PodLogsConfig `yaml:"pod_logs"`
	// MaxLineBytes caps one line (or one reassembled record); longer ones are
	// truncated to this size and counted in vigil_logs_truncated_lines_total.
	MaxLineBytes int `yaml:"max_line_bytes"`
	// MaxOpenFiles caps the file descriptors the tailer holds; further files
	// wait until an idle one is closed.
	MaxOpenFiles int `yaml:"max_open_files"`
	// PollInterval is how often idle files are checked for new data and
	// rotation.
	PollInterval time.Duration `yaml:"poll_interval"`
	// ScanInterval is how often the globs are expanded again.
	ScanInterval time.Duration `yaml:"scan_interval"`
	// CommitInterval is how often read positions are written (after the lines
	// read so far are in the disk buffer).
	CommitInterval time.Duration `yaml:"commit_interval"`
	// StartAt says where a file that has no saved position is read from when
	// it is found at start-up: "beginning" or "end". Files that appear later
	// are always read from the beginning.
	StartAt string `yaml:"start_at"`
	// PositionsFile is where read positions are kept across restarts.
	PositionsFile string `yaml:"positions_file"`
	// ForwardToPipeline sends every record as OpenTelemetry log records to
	// the agent's pipeline (the OTLP exporter), for example to Loki's native
	// OTLP endpoint.
	ForwardToPipeline bool `yaml:"forward_to_pipeline"`
	// Loki ships records with the Loki push API; shipping is off while the
	// URL is empty.
	Loki LokiConfig `yaml:"loki"`
	// Patterns count matching lines per workload in vigil_log_matches_total.
	Patterns []PatternConfig `yaml:"patterns"`
	// Levels counts lines per workload and level in vigil_log_lines_total.
	Levels LevelsConfig `yaml:"levels"`
}

// InputConfig is a set of files read the same way.
type InputConfig struct {
	// Paths are file globs (filepath.Match syntax plus a "**" folder
	// wildcard is NOT supported: list each depth).
	Paths []string `yaml:"paths"`
	// Exclude are globs matched against a found path to leave it out.
	Exclude []string `yaml:"exclude"`
	// Format is auto, cri, docker or plain.
	Format string `yaml:"format"`
	// Labels are Loki stream labels added to every record of these files.
	Labels map[string]string `yaml:"labels"`
	// Multiline groups continuation lines (stack traces) into one record.
	Multiline MultilineConfig `yaml:"multiline"`
}

// PodLogsConfig reads /var/log/pods/<namespace>_<pod>_<uid>/<container>/*.log.
type PodLogsConfig struct {
	// Enabled turns pod log tailing on; it is harmless where the folder does
	// not exist.
	Enabled bool `yaml:"enabled"`
	// Dir is the kubelet's pod log folder.
	Dir string `yaml:"dir"`
	// Format is auto, cri or docker.
	Format string `yaml:"format"`
	// Labels are extra Loki stream labels for pod logs.
	Labels map[string]string `yaml:"labels"`
	// Multiline groups continuation lines into one record for every pod.
	Multiline MultilineConfig `yaml:"multiline"`
}

// MultilineConfig groups lines into one record: a line that matches Start
// begins a record, every other line is appended to the current one.
type MultilineConfig struct {
	// Start is a regular expression; empty turns grouping off.
	Start string `yaml:"start"`
	// MaxLines flushes a group that grew to this many lines.
	MaxLines int `yaml:"max_lines"`
	// Timeout flushes a group when no new line came for this long.
	Timeout time.Duration `yaml:"timeout"`
}

// LokiConfig configures the Loki push client and its disk buffer.
type LokiConfig struct {
	// URL is the push endpoint, e.g. http://loki:3100/loki/api/v1/push.
	URL string `yaml:"url"`
	// TenantID is sent as X-Scope-OrgID when set.
	TenantID string `yaml:"tenant_id"`
	// Labels are static stream labels added to every stream.
	Labels map[string]string `yaml:"labels"`
	// BatchSize is the payload size (bytes of lines) that triggers a push.
	BatchSize int `yaml:"batch_size"`
	// BatchWait is the longest a line waits for its batch to fill.
	BatchWait time.Duration `yaml:"batch_wait"`
	// MinBackoff and MaxBackoff bound the retry delay after a failed push
	// (doubling, with jitter). Retries go on until the push succeeds or is
	// refused for good (a 4xx other than 429).
	MinBackoff time.Duration `yaml:"min_backoff"`
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// Timeout bounds one push request.
	Timeout time.Duration `yaml:"timeout"`
	// Buffer is the on-disk queue between the tailer and the push client.
	Buffer BufferConfig `yaml:"buffer"`
	// HTTPClientConfig has authentication (basic_auth, authorization,
	// bearer_token_file, oauth2), TLS, proxy and http_headers, as in
	// Prometheus's configuration.
	// (A named, not embedded, field: embedding would promote the type's
	// UnmarshalYAML to LokiConfig and hide every other key.)
	HTTP promconfig.HTTPClientConfig `yaml:",inline"`
}

// BufferConfig bounds the on-disk buffer.
type BufferConfig struct {
	// Dir holds the segment files and the acknowledgement mark.
	Dir string `yaml:"dir"`
	// MaxBytes caps the buffer; lines read while it is full are dropped and
	// counted (their read position still advances).
	MaxBytes int64 `yaml:"max_bytes"`
	// SegmentBytes is the size at which a new segment file is started.
	SegmentBytes int64 `yaml:"segment_bytes"`
	// Fsync makes every commit fsync the buffer and the positions file, so a
	// power loss (not only a crash) loses no acknowledged read position.
	Fsync bool `yaml:"fsync"`
}

// PatternConfig is one log-derived counter.
type PatternConfig struct {
	// Name is the value of the pattern label.
	Name string `yaml:"name"`
	// Regex is a regular expression (RE2) matched against the line.
	Regex string `yaml:"regex"`
	// Literal is a plain substring matched against the line (faster).
	Literal string `yaml:"literal"`
	// Labels are extra constant labels of this pattern's series; every
	// pattern's series carry the union of all label names (empty where a
	// pattern does not set one).
	Labels map[string]string `yaml:"labels"`
}

// LevelsConfig controls level detection.
type LevelsConfig struct {
	// Enabled counts lines per level and workload.
	Enabled bool `yaml:"enabled"`
	// ScanBytes is how far into a line the level is looked for.
	ScanBytes int `yaml:"scan_bytes"`
}

// NewConfig returns the defaults: pod logs tailed (when the folder exists),
// levels counted, nothing shipped until loki.url is set.
func NewConfig() *Config {
	return &Config{
		PodLogs: PodLogsConfig{
			Enabled: true,
			Dir:     "/var/log/pods",
			Format:  FormatAuto,
		},
		MaxLineBytes:   256 << 10,
		MaxOpenFiles:   512,
		PollInterval:   250 * time.Millisecond,
		ScanInterval:   10 * time.Second,
		CommitInterval: 200 * time.Millisecond,
		StartAt:        "beginning",
		PositionsFile:  "/var/lib/vigil/logs/positions.json",
		Loki: LokiConfig{
			BatchSize:  1 << 20,
			BatchWait:  time.Second,
			MinBackoff: 500 * time.Millisecond,
			MaxBackoff: 30 * time.Second,
			Timeout:    10 * time.Second,
			Buffer: BufferConfig{
				Dir:          "/var/lib/vigil/logs/buffer",
				MaxBytes:     1 << 30,
				SegmentBytes: 8 << 20,
			},
			HTTP: promconfig.DefaultHTTPClientConfig,
		},
		Levels: LevelsConfig{Enabled: true, ScanBytes: 200},
	}
}

func validFormat(f string, plainOK bool) bool {
	switch f {
	case FormatAuto, FormatCRI, FormatDocker:
		return true
	case FormatPlain:
		return plainOK
	}
	return false
}

// Validate returns every problem in the section, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	for i, in := range c.Inputs {
		p := fmt.Sprintf("inputs[%d]", i)
		if len(in.Paths) == 0 {
			bad(p+".paths", "at least one glob is required")
		}
		for j, g := range append(append([]string{}, in.Paths...), in.Exclude...) {
			if _, err := filepath.Match(g, ""); err != nil {
				bad(fmt.Sprintf("%s.paths[%d]", p, j), "bad glob %q: %v", g, err)
			}
			if g != "" && !filepath.IsAbs(g) {
				bad(fmt.Sprintf("%s.paths[%d]", p, j), "glob %q must be an absolute path", g)
			}
		}
		if in.Format != "" && !validFormat(in.Format, true) {
			bad(p+".format", "%q is not one of auto, cri, docker, plain", in.Format)
		}
		checkLabels(p+".labels", in.Labels, bad)
		checkMultiline(p+".multiline", in.Multiline, bad)
	}
	if c.PodLogs.Enabled {
		if c.PodLogs.Dir == "" {
			bad("pod_logs.dir", "must not be empty")
		}
		if !validFormat(c.PodLogs.Format, false) {
			bad("pod_logs.format", "%q is not one of auto, cri, docker", c.PodLogs.Format)
		}
	}
	checkLabels("pod_logs.labels", c.PodLogs.Labels, bad)
	checkMultiline("pod_logs.multiline", c.PodLogs.Multiline, bad)
	if c.MaxLineBytes < 1024 {
		bad("max_line_bytes", "must be at least 1024, got %d", c.MaxLineBytes)
	}
	if c.MaxOpenFiles < 1 {
		bad("max_open_files", "must be at least 1, got %d", c.MaxOpenFiles)
	}
	if c.PollInterval <= 0 {
		bad("poll_interval", "must be positive")
	}
	if c.ScanInterval <= 0 {
		bad("scan_interval", "must be positive")
	}
	if c.CommitInterval <= 0 {
		bad("commit_interval", "must be positive")
	}
	if c.StartAt != "beginning" && c.StartAt != "end" {
		bad("start_at", "%q is not one of beginning, end", c.StartAt)
	}
	if c.PositionsFile == "" {
		bad("positions_file", "must not be empty")
	}
	if c.Loki.URL != "" {
		u, err := url.Parse(c.Loki.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("loki.url", "%q is not an http(s) URL", c.Loki.URL)
		}
		if c.Loki.Buffer.Dir == "" {
			bad("loki.buffer.dir", "must not be empty")
		}
		if err := c.Loki.HTTP.Validate(); err != nil {
			bad("loki", "%v", err)
		}
	}
	checkLabels("loki.labels", c.Loki.Labels, bad)
	if c.Loki.BatchSize < 1024 {
		bad("loki.batch_size", "must be at least 1024 bytes, got %d", c.Loki.BatchSize)
	}
	if c.Loki.BatchWait <= 0 {
		bad("loki.batch_wait", "must be positive")
	}
	if c.Loki.MinBackoff <= 0 {
		bad("loki.min_backoff", "must be positive")
	}
	if c.Loki.MaxBackoff < c.Loki.MinBackoff {
		bad("loki.max_backoff", "must be at least min_backoff (%s)", c.Loki.MinBackoff)
	}
	if c.Loki.Timeout <= 0 {
		bad("loki.timeout", "must be positive")
	}
	if c.Loki.Buffer.SegmentBytes < 64<<10 {
		bad("loki.buffer.segment_bytes", "must be at least 65536, got %d", c.Loki.Buffer.SegmentBytes)
	}
	if c.Loki.Buffer.MaxBytes < c.Loki.Buffer.SegmentBytes {
		bad("loki.buffer.max_bytes", "must be at least segment_bytes (%d), got %d", c.Loki.Buffer.SegmentBytes, c.Loki.Buffer.MaxBytes)
	}
	names := map[string]bool{}
	for i, p := range c.Patterns {
		f := fmt.Sprintf("patterns[%d]", i)
		switch {
		case p.Name == "":
			bad(f+".name", "must not be empty")
		case names[p.Name]:
			bad(f+".name", "duplicate pattern %q", p.Name)
		}
		names[p.Name] = true
		switch {
		case p.Regex == "" && p.Literal == "":
			bad(f, "one of regex or literal is required")
		case p.Regex != "" && p.Literal != "":
			bad(f, "set regex or literal, not both")
		case p.Regex != "":
			if _, err := regexp.Compile(p.Regex); err != nil {
				bad(f+".regex", "%v", err)
			}
		}
		for k := range p.Labels {
			if !model.LegacyValidation.IsValidLabelName(k) {
				bad(f+".labels."+k, "not a valid label name")
			}
			if k == "pattern" || reservedMetricLabel(k) {
				bad(f+".labels."+k, "label name is reserved")
			}
		}
	}
	if c.Levels.Enabled && c.Levels.ScanBytes < 8 {
		bad("levels.scan_bytes", "must be at least 8, got %d", c.Levels.ScanBytes)
	}
	return errors.Join(errs...)
}

func checkLabels(field string, l map[string]string, bad func(string, string, ...any)) {
	for k := range l {
		if !model.LegacyValidation.IsValidLabelName(k) || strings.HasPrefix(k, "__") {
			bad(field+"."+k, "not a valid Loki label name")
		}
	}
}

func checkMultiline(field string, m MultilineConfig, bad func(string, string, ...any)) {
	if m.Start == "" {
		return
	}
	if _, err := regexp.Compile(m.Start); err != nil {
		bad(field+".start", "%v", err)
	}
	if m.MaxLines < 0 {
		bad(field+".max_lines", "must not be negative")
	}
	if m.Timeout < 0 {
		bad(field+".timeout", "must not be negative")
	}
}

// reservedMetricLabel reports whether k is already a label of
// vigil_log_matches_total.
func reservedMetricLabel(k string) bool {
	for _, n := range workload.LabelNames {
		if n == k {
			return true
		}
	}
	return false
}
