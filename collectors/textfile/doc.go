// Package textfile is node_exporter's textfile collector: it exposes the
// samples of every *.prom file in the configured directories, so cron jobs
// and scripts publish metrics by writing a file (atomically: write a
// temporary name, then rename it to *.prom).
//
// The semantics are node_exporter's (collector/textfile.go):
//
//   - each directory entry may be a glob; a directory that cannot be read
//     is an error;
//   - only names ending in .prom are read, in name order; a file that
//     cannot be opened or parsed, or that carries client-side timestamps,
//     is skipped whole and is an error;
//   - node_textfile_mtime_seconds{file} is the modification time (whole
//     seconds) of each file read successfully; a failed file has none, so
//     it never looks fresh;
//   - node_textfile_scrape_error is 1 when anything above went wrong in
//     this scrape, else 0 (node-mixin's NodeTextFileCollectorScrapeError
//     alerts on it);
//   - a family without HELP gets "Metric read from <files>"; a family
//     whose HELP differs from the first file's that defines it is dropped
//     and is an error (node_exporter 1.6 and later);
//   - within a family, series lacking a label that others have get it
//     empty.
//
// Where node_exporter leaves a conflict to its registry (which drops the
// second series or family without setting node_textfile_scrape_error),
// Vigil drops it itself and sets the error, so that the alert fires: a
// family whose TYPE differs from the first file's, and a series (name and
// labels) already read from an earlier file.
//
// Bounds: files larger than max_file_bytes, files beyond max_files and a
// file that would bring the series past max_series are skipped whole and
// are errors; entries that are not regular files likewise (a FIFO named
// x.prom would block a reader; node_exporter reads a directory named
// x.prom as an empty file).
package textfile
