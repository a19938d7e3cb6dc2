package textfile

import (
	"errors"
	"fmt"
	"path/filepath"
)

// Config is the collectors.textfile section.
type Config struct {
	// Directories are read for *.prom files; each may be a glob
	// (node_exporter's --collector.textfile.directory).
	Directories []string `yaml:"directories"`
	// MaxFileBytes skips (as an error) a file larger than this.
	MaxFileBytes int64 `yaml:"max_file_bytes"`
	// MaxFiles is the most *.prom files read in one scrape; the others
	// are skipped, as an error.
	MaxFiles int `yaml:"max_files"`
	// MaxSeries is the most series exposed in one scrape; a file that
	// would go past it is skipped whole, as an error.
	MaxSeries int `yaml:"max_series"`
}

// NewConfig returns the defaults: no directory (the section must name
// one), 16 MiB a file, 1000 files, 100000 series.
func NewConfig() *Config {
	return &Config{MaxFileBytes: 16 << 20, MaxFiles: 1000, MaxSeries: 100000}
}

// Validate reports every problem, each naming its field. It reads no
// file: a directory that is missing at run time is a scrape error, as in
// node_exporter, so a cron job's directory may appear later.
func (c *Config) Validate() error {
	var errs []error
	if len(c.Directories) == 0 {
		errs = append(errs, errors.New("directories: must list at least one directory"))
	}
	seen := map[string]bool{}
	for i, d := range c.Directories {
		switch {
		case d == "":
			errs = append(errs, fmt.Errorf("directories[%d]: must not be empty", i))
		case !filepath.IsAbs(d):
			errs = append(errs, fmt.Errorf("directories[%d]: %q must be an absolute path", i, d))
		case seen[d]:
			errs = append(errs, fmt.Errorf("directories[%d]: %q is listed twice", i, d))
		}
		if _, err := filepath.Match(d, ""); err != nil {
			errs = append(errs, fmt.Errorf("directories[%d]: %q: %w", i, d, err))
		}
		seen[d] = true
	}
	if c.MaxFileBytes < 1 {
		errs = append(errs, fmt.Errorf("max_file_bytes: must be at least 1, got %d", c.MaxFileBytes))
	}
	if c.MaxFiles < 1 {
		errs = append(errs, fmt.Errorf("max_files: must be at least 1, got %d", c.MaxFiles))
	}
	if c.MaxSeries < 1 {
		errs = append(errs, fmt.Errorf("max_series: must be at least 1, got %d", c.MaxSeries))
	}
	return errors.Join(errs...)
}
