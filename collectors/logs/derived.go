package logs

import (
	"bytes"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-agent/vigil/collectors/workload"
)

// Levels a line can be counted under, in vigil_log_lines_total{level}.
var levelNames = [...]string{"unknown", "trace", "debug", "info", "warn", "error", "fatal"}

const (
	levelUnknown = iota
	levelTrace
	levelDebug
	levelInfo
	levelWarn
	levelError
	levelFatal
)

// matcher is one compiled pattern.
type matcher struct {
	name    string
	re      *regexp.Regexp
	literal []byte
	labels  []string // values for derived.extraNames
}

func (m *matcher) match(b []byte) bool {
	if m.re != nil {
		return m.re.Match(b)
	}
	return bytes.Contains(b, m.literal)
}

// workloadCounters are the counters of one workload; the tailer increments
// them without a lock and Update reads them.
type workloadCounters struct {
	labels  []string // workload.Identity.Labels()
	matches []atomic.Uint64
	levels  [len(levelNames)]atomic.Uint64
	refs    int // files that point here
}

// derived holds log-derived metrics: pattern matches and lines per level,
// per workload. Series of a workload go away when its last file does.
type derived struct {
	matchers   []matcher
	extraNames []string
	levels     bool
	scanBytes  int
	matchDesc  *prometheus.Desc
	levelDesc  *prometheus.Desc

	mu        sync.Mutex
	workloads map[string]*workloadCounters
}

func newDerived(cfg *Config) *derived {
	d := &derived{levels: cfg.Levels.Enabled, scanBytes: cfg.Levels.ScanBytes, workloads: map[string]*workloadCounters{}}
	extra := map[string]bool{}
	for _, p := range cfg.Patterns {
		for k := range p.Labels {
			extra[k] = true
		}
	}
	for k := range extra {
		d.extraNames = append(d.extraNames, k)
	}
	sort.Strings(d.extraNames)
	for _, p := range cfg.Patterns {
		m := matcher{name: p.Name}
		if p.Regex != "" {
			m.re = regexp.MustCompile(p.Regex) // validated
		} else {
			m.literal = []byte(p.Literal)
		}
		for _, k := range d.extraNames {
			m.labels = append(m.labels, p.Labels[k])
		}
		d.matchers = append(d.matchers, m)
	}
	names := append([]string{"pattern"}, workload.LabelNames...)
	d.matchDesc = prometheus.NewDesc("vigil_log_matches_total",
		"Log records that matched a configured pattern, per workload.", append(names, d.extraNames...), nil)
	d.levelDesc = prometheus.NewDesc("vigil_log_lines_total",
		"Log records per workload and level (unknown when no level could be read).",
		append([]string{"level"}, workload.LabelNames...), nil)
	return d
}

// attach returns the counters of id's workload, creating them.
func (d *derived) attach(id workload.Identity) *workloadCounters {
	labels := id.Labels()
	key := string(bytes.Join(toBytes(labels), []byte{0}))
	d.mu.Lock()
	defer d.mu.Unlock()
	w := d.workloads[key]
	if w == nil {
		w = &workloadCounters{labels: labels, matches: make([]atomic.Uint64, len(d.matchers))}
		d.workloads[key] = w
	}
	w.refs++
	return w
}

// detach drops a file's reference; the workload's series disappear with
// its last file.
func (d *derived) detach(w *workloadCounters) {
	d.mu.Lock()
	defer d.mu.Unlock()
	w.refs--
	if w.refs <= 0 {
		key := string(bytes.Join(toBytes(w.labels), []byte{0}))
		delete(d.workloads, key)
	}
}

func toBytes(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = []byte(s)
	}
	return out
}

// observe counts one record.
func (d *derived) observe(w *workloadCounters, content []byte) (level int) {
	for i := range d.matchers {
		if d.matchers[i].match(content) {
			w.matches[i].Add(1)
		}
	}
	if d.levels {
		level = detectLevel(content, d.scanBytes)
		w.levels[level].Add(1)
	}
	return level
}

func (d *derived) collect(ch chan<- prometheus.Metric) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, w := range d.workloads {
		for i := range d.matchers {
			m := &d.matchers[i]
			vals := append(append([]string{m.name}, w.labels...), m.labels...)
			ch <- prometheus.MustNewConstMetric(d.matchDesc, prometheus.CounterValue, float64(w.matches[i].Load()), vals...)
		}
		if d.levels {
			for l := range levelNames {
				ch <- prometheus.MustNewConstMetric(d.levelDesc, prometheus.CounterValue, float64(w.levels[l].Load()),
					append([]string{levelNames[l]}, w.labels...)...)
			}
		}
	}
}

// detectLevel reads a record's level from its first scan bytes: a klog
// header ("E1125 10:00:00.000000 …"), or the first word that names a level
// (which covers level=error, "level":"warn", [ERROR], WARN: and the like).
func detectLevel(b []byte, scan int) int {
	if len(b) > scan {
		b = b[:scan]
	}
	if len(b) >= 6 && b[5] == ' ' && isDigit(b[1]) && isDigit(b[2]) && isDigit(b[3]) && isDigit(b[4]) {
		switch b[0] {
		case 'I':
			return levelInfo
		case 'W':
			return levelWarn
		case 'E':
			return levelError
		case 'F':
			return levelFatal
		}
	}
	i := 0
	for i < len(b) {
		for i < len(b) && !isLetter(b[i]) {
			i++
		}
		j := i
		for j < len(b) && isLetter(b[j]) {
			j++
		}
		if n := j - i; n >= 3 && n <= 8 {
			if l := levelWord(b[i:j]); l != levelUnknown {
				return l
			}
		}
		i = j
	}
	return levelUnknown
}

func isDigit(c byte) bool  { return c >= '0' && c <= '9' }
func isLetter(c byte) bool { return (c|0x20) >= 'a' && (c|0x20) <= 'z' }

func levelWord(w []byte) int {
	var buf [8]byte
	for i, c := range w {
		buf[i] = c | 0x20
	}
	switch string(buf[:len(w)]) {
	case "trace":
		return levelTrace
	case "debug":
		return levelDebug
	case "info":
		return levelInfo
	case "warn", "warning":
		return levelWarn
	case "error":
		return levelError
	case "fatal", "critical", "crit", "panic", "emerg":
		return levelFatal
	}
	return levelUnknown
}
