package textfile

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-agent/vigil/collectors"
	"github.com/vigil-agent/vigil/component"
)

// Name is the collector's name and configuration key.
const Name = "textfile"

func init() { component.RegisterCollector(Name, false, NewConfig, New) }

var (
	mtimeDesc = prometheus.NewDesc("node_textfile_mtime_seconds",
		"Unixtime mtime of textfiles successfully read.", []string{"file"}, nil)
	scrapeErrorDesc = prometheus.NewDesc("node_textfile_scrape_error",
		"1 if there was an error opening or reading a file, 0 otherwise", nil, nil)
)

// Collector reads the *.prom files of its directories on every Update.
type Collector struct {
	cfg    Config
	logger *slog.Logger
}

// New builds the collector; it reads nothing until Update.
func New(cfg *Config, set collectors.Settings) (*Collector, error) {
	logger := set.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Collector{cfg: *cfg, logger: logger}, nil
}

// parsedFile is one *.prom file after parsing.
type parsedFile struct {
	path     string
	mtime    float64
	families []*dto.MetricFamily // sorted by name
}

// family is what the first file defining a metric name fixed.
type family struct {
	help  string // "" when that file had no HELP
	typ   dto.MetricType
	files []string // files whose family of this name is exposed
}

// Update implements collectors.Collector. Problems with files are reported
// through node_textfile_scrape_error, never as the collector's failure, as
// node_exporter does.
func (c *Collector) Update(ctx context.Context, ch chan<- prometheus.Metric) error {
	errored := false
	fail := func(msg string, args ...any) {
		errored = true
		c.logger.Error(msg, args...)
	}
	files := c.listFiles(fail)
	if len(files) > c.cfg.MaxFiles {
		fail("too many textfiles; the rest are skipped", "max_files", c.cfg.MaxFiles, "files", len(files), "first_skipped", files[c.cfg.MaxFiles])
		files = files[:c.cfg.MaxFiles]
	}

	// Parse every file first: a family without HELP names every file
	// that defines it.
	var parsed []*parsedFile
	families := map[string]*family{}
	series := 0
	for _, path := range files {
		if err := ctx.Err(); err != nil {
			return err
		}
		pf, err := c.readFile(path)
		if err != nil {
			fail("failed to collect textfile data", "file", path, "err", err)
			continue
		}
		n := 0
		for _, mf := range pf.families {
			n += len(mf.Metric)
		}
		if series+n > c.cfg.MaxSeries {
			fail("textfile skipped: it would bring the series past max_series", "file", path, "series", n, "max_series", c.cfg.MaxSeries)
			continue
		}
		series += n
		kept := pf.families[:0]
		for _, mf := range pf.families {
			name := mf.GetName()
			f, seen := families[name]
			if !seen {
				families[name] = &family{help: mf.GetHelp(), typ: mf.GetType(), files: []string{path}}
				kept = append(kept, mf)
				continue
			}
			// "Metric read from" names every file defining the name, as
			// node_exporter's does, whether or not its family is kept.
			f.files = append(f.files, path)
			switch {
			case mf.Help != nil && f.help != "" && mf.GetHelp() != f.help:
				fail("inconsistent metric help text", "metric", name, "original_help_text", f.help, "new_help_text", mf.GetHelp(), "file", path, "first_file", f.files[0])
			case mf.GetType() != f.typ:
				fail("inconsistent metric type", "metric", name, "original_type", f.typ.String(), "new_type", mf.GetType().String(), "file", path, "first_file", f.files[0])
			default:
				if f.help == "" {
					// The first file had no HELP: the first one given
					// holds for the whole family.
					f.help = mf.GetHelp()
				}
				kept = append(kept, mf)
			}
		}
		pf.families = kept
		parsed = append(parsed, pf)
	}

	// Convert in file order; a series already exposed is dropped.
	seenSeries := map[string]string{}
	var key bytes.Buffer
	for _, pf := range parsed {
		for _, mf := range pf.families {
			f := families[mf.GetName()]
			help := f.help
			if help == "" {
				help = "Metric read from " + strings.Join(f.files, ", ")
			}
			for _, m := range convert(mf, help, &key) {
				if first, dup := seenSeries[m.key]; dup {
					fail("duplicate series dropped", "metric", mf.GetName(), "file", pf.path, "first_file", first)
					continue
				}
				seenSeries[m.key] = pf.path
				if m.err != nil {
					fail("textfile series dropped", "metric", mf.GetName(), "file", pf.path, "err", m.err)
					continue
				}
				ch <- m.metric
			}
		}
		ch <- prometheus.MustNewConstMetric(mtimeDesc, prometheus.GaugeValue, pf.mtime, pf.path)
	}
	v := 0.0
	if errored {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrorDesc, prometheus.GaugeValue, v)
	return nil
}

// listFiles returns the *.prom paths of every directory, each directory's
// in name order.
func (c *Collector) listFiles(fail func(string, ...any)) []string {
	var dirs []string
	for _, d := range c.cfg.Directories {
		m, err := filepath.Glob(d)
		if err != nil || len(m) == 0 {
			// Not a glob, or nothing matched: read it as a directory and
			// let that fail.
			m = []string{d}
		}
		dirs = append(dirs, m...)
	}
	var files []string
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir)
		if err != nil {
			fail("failed to read textfile collector directory", "path", dir, "err", err)
		}
		for _, e := range entries {
			if strings.HasSuffix(e.Name(), ".prom") {
				files = append(files, filepath.Join(dir, e.Name()))
			}
		}
	}
	return files
}

// readFile parses one file. Any error skips the whole file.
func (c *Collector) readFile(path string) (*parsedFile, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%q is not a regular file", path)
	}
	if st.Size() > c.cfg.MaxFileBytes {
		return nil, fmt.Errorf("%q has %d bytes, more than max_file_bytes (%d)", path, st.Size(), c.cfg.MaxFileBytes)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("failed to open textfile data file %q: %w", path, err)
	}
	defer f.Close()
	// The file may grow between the stat and the read.
	data, err := io.ReadAll(io.LimitReader(f, c.cfg.MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("failed to read %q: %w", path, err)
	}
	if int64(len(data)) > c.cfg.MaxFileBytes {
		return nil, fmt.Errorf("%q has more than max_file_bytes (%d)", path, c.cfg.MaxFileBytes)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	byName, err := parser.TextToMetricFamilies(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("failed to parse textfile data from %q: %w", path, err)
	}
	for _, mf := range byName {
		for _, m := range mf.Metric {
			if m.TimestampMs != nil {
				return nil, fmt.Errorf("textfile %q contains unsupported client-side timestamps, skipping entire file", path)
			}
		}
	}
	// Stat once parsed, so that a failed file never looks fresh.
	fst, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("failed to stat %q: %w", path, err)
	}
	pf := &parsedFile{path: path, mtime: float64(fst.ModTime().Unix())}
	for _, mf := range byName {
		pf.families = append(pf.families, mf)
	}
	sort.Slice(pf.families, func(i, j int) bool { return pf.families[i].GetName() < pf.families[j].GetName() })
	return pf, nil
}

// constMetric is one series of a family, with the key that identifies it
// (name and every label, as the registry hashes them).
type constMetric struct {
	key    string
	metric prometheus.Metric
	err    error
}

// convert turns a parsed family into constant metrics. Series lacking a
// label that another series of the family has get it empty.
func convert(mf *dto.MetricFamily, help string, key *bytes.Buffer) []constMetric {
	all := map[string]bool{}
	for _, m := range mf.Metric {
		for _, l := range m.Label {
			all[l.GetName()] = true
		}
	}
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	desc := prometheus.NewDesc(mf.GetName(), help, names, nil)
	out := make([]constMetric, 0, len(mf.Metric))
	for _, m := range mf.Metric {
		have := map[string]string{}
		for _, l := range m.Label {
			have[l.GetName()] = l.GetValue()
		}
		values := make([]string, len(names))
		key.Reset()
		key.WriteString(mf.GetName())
		for i, n := range names {
			values[i] = have[n]
			key.WriteByte(0xff)
			key.WriteString(n)
			key.WriteByte(0xfe)
			key.WriteString(values[i])
		}
		var pm prometheus.Metric
		var err error
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			pm, err = prometheus.NewConstMetric(desc, prometheus.CounterValue, m.GetCounter().GetValue(), values...)
		case dto.MetricType_GAUGE:
			pm, err = prometheus.NewConstMetric(desc, prometheus.GaugeValue, m.GetGauge().GetValue(), values...)
		case dto.MetricType_SUMMARY:
			q := map[float64]float64{}
			for _, x := range m.GetSummary().GetQuantile() {
				q[x.GetQuantile()] = x.GetValue()
			}
			pm, err = prometheus.NewConstSummary(desc, m.GetSummary().GetSampleCount(), m.GetSummary().GetSampleSum(), q, values...)
		case dto.MetricType_HISTOGRAM:
			b := map[float64]uint64{}
			for _, x := range m.GetHistogram().GetBucket() {
				b[x.GetUpperBound()] = x.GetCumulativeCount()
			}
			pm, err = prometheus.NewConstHistogram(desc, m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(), b, values...)
		default:
			pm, err = prometheus.NewConstMetric(desc, prometheus.UntypedValue, m.GetUntyped().GetValue(), values...)
		}
		out = append(out, constMetric{key: key.String(), metric: pm, err: err})
	}
	return out
}
