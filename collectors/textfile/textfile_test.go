package textfile

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/vigil-agent/vigil/collectors"
)

// gather runs one Update through a registry, as a scrape does, and
// returns the families by name. The registry must see no conflict: the
// collector drops duplicates itself.
func gather(t *testing.T, cfg *Config) map[string]*dto.MetricFamily {
	t.Helper()
	c, err := New(cfg, testSettings())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(asPrometheus{c})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

type asPrometheus struct{ c *Collector }

func (asPrometheus) Describe(chan<- *prometheus.Desc) {}
func (a asPrometheus) Collect(ch chan<- prometheus.Metric) {
	_ = a.c.Update(context.Background(), ch)
}

func write(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func config(dir string) *Config {
	c := NewConfig()
	c.Directories = []string{dir}
	return c
}

func scrapeError(t *testing.T, mfs map[string]*dto.MetricFamily) float64 {
	t.Helper()
	f := mfs["node_textfile_scrape_error"]
	if f == nil {
		t.Fatal("no node_textfile_scrape_error")
	}
	return f.Metric[0].GetGauge().GetValue()
}

// files lists the files with an mtime series: the ones read successfully.
func files(mfs map[string]*dto.MetricFamily) []string {
	var out []string
	for _, m := range mfs["node_textfile_mtime_seconds"].GetMetric() {
		out = append(out, filepath.Base(m.Label[0].GetValue()))
	}
	return out
}

// Each bound skips the offending file whole, sets the scrape error and
// leaves the other files' samples alone.
func TestLimits(t *testing.T) {
	t.Run("max_file_bytes", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "a.prom", "tf_small 1\n")
		write(t, dir, "b.prom", "tf_big{pad=\""+strings.Repeat("x", 200)+"\"} 1\n")
		cfg := config(dir)
		cfg.MaxFileBytes = 100
		mfs := gather(t, cfg)
		if scrapeError(t, mfs) != 1 || mfs["tf_big"] != nil || mfs["tf_small"] == nil {
			t.Fatalf("error %v, families %v", scrapeError(t, mfs), keys(mfs))
		}
	})
	t.Run("max_files", func(t *testing.T) {
		dir := t.TempDir()
		for _, n := range []string{"a", "b", "c"} {
			write(t, dir, n+".prom", "tf_"+n+" 1\n")
		}
		cfg := config(dir)
		cfg.MaxFiles = 2
		mfs := gather(t, cfg)
		if scrapeError(t, mfs) != 1 || mfs["tf_c"] != nil || mfs["tf_a"] == nil || mfs["tf_b"] == nil {
			t.Fatalf("error %v, families %v", scrapeError(t, mfs), keys(mfs))
		}
	})
	t.Run("max_series", func(t *testing.T) {
		dir := t.TempDir()
		write(t, dir, "a.prom", "tf_a{i=\"1\"} 1\ntf_a{i=\"2\"} 1\n")
		var b strings.Builder
		for i := range 10 {
			b.WriteString("tf_b{i=\"" + strings.Repeat("9", i+1) + "\"} 1\n")
		}
		write(t, dir, "b.prom", b.String())
		cfg := config(dir)
		cfg.MaxSeries = 5
		mfs := gather(t, cfg)
		if scrapeError(t, mfs) != 1 || mfs["tf_b"] != nil || len(mfs["tf_a"].GetMetric()) != 2 {
			t.Fatalf("error %v, families %v", scrapeError(t, mfs), keys(mfs))
		}
		if got := files(mfs); len(got) != 1 || got[0] != "a.prom" {
			t.Fatalf("mtime for %v, want only a.prom", got)
		}
	})
}

// Entries that are not regular files are refused, never opened: a FIFO
// would block the scrape until a writer came.
func TestNotRegularFiles(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "a.prom", "tf_a 1\n")
	if err := syscall.Mkfifo(filepath.Join(dir, "fifo.prom"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub.prom"), 0o755); err != nil {
		t.Fatal(err)
	}
	mfs := gather(t, config(dir))
	if scrapeError(t, mfs) != 1 {
		t.Fatal("no scrape error for a FIFO and a directory")
	}
	if got := files(mfs); len(got) != 1 || got[0] != "a.prom" {
		t.Fatalf("mtime for %v, want only a.prom", got)
	}
}

// A fixed file is read again on the next scrape: errors are per scrape.
func TestErrorClearsWhenFileIsFixed(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, "job.prom", "tf_job{ 1\n")
	if v := scrapeError(t, gather(t, config(dir))); v != 1 {
		t.Fatalf("broken file: scrape error %v", v)
	}
	write(t, dir, "job.prom", "tf_job 1\n")
	mfs := gather(t, config(dir))
	if v := scrapeError(t, mfs); v != 0 || mfs["tf_job"] == nil {
		t.Fatalf("fixed file: scrape error %v, families %v", v, keys(mfs))
	}
}

// Globs pick several directories, as node_exporter's flag does.
func TestGlobDirectories(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{"a", "b"} {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, filepath.Join(root, d), "x.prom", "tf_"+d+" 1\n")
	}
	mfs := gather(t, config(filepath.Join(root, "*")))
	if scrapeError(t, mfs) != 0 || mfs["tf_a"] == nil || mfs["tf_b"] == nil {
		t.Fatalf("error %v, families %v", scrapeError(t, mfs), keys(mfs))
	}
}

func TestConfigValidate(t *testing.T) {
	if err := config("/var/lib/node_exporter").Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	bad := &Config{Directories: []string{"", "relative", "/a/[", "/x", "/x"}, MaxFileBytes: 0, MaxFiles: 0, MaxSeries: -1}
	err := bad.Validate()
	for _, want := range []string{"directories[0]: must not be empty", `directories[1]: "relative" must be an absolute path`,
		`directories[2]: "/a/["`, `directories[4]: "/x" is listed twice`, "max_file_bytes", "max_files", "max_series"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not say %q", err, want)
		}
	}
	if err := NewConfig().Validate(); err == nil || !strings.Contains(err.Error(), "directories: must list at least one directory") {
		t.Errorf("no directory: %v", err)
	}
}

func keys(m map[string]*dto.MetricFamily) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func testSettings() collectors.Settings { return collectors.Settings{} }
