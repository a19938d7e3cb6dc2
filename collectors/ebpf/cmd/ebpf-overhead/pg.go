//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// pgBinary finds one of PostgreSQL's programs in -pg-bin, on PATH, or in
// Debian's /usr/lib/postgresql/<version>/bin (the newest version), as
// internal/testenv does for the tests.
func pgBinary(name string) (string, error) {
	if pgBin != "" {
		p := filepath.Join(pgBin, name)
		if _, err := os.Stat(p); err != nil {
			return "", err
		}
		return p, nil
	}
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob(filepath.Join("/usr/lib/postgresql", "*", "bin", name))
	version := func(bin string) int {
		v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bin))))
		return v
	}
	slices.SortFunc(matches, func(a, b string) int { return version(b) - version(a) })
	if len(matches) == 0 {
		return "", fmt.Errorf("%s not installed (not on PATH nor in /usr/lib/postgresql/*/bin; hack/install-deps.sh installs it)", name)
	}
	return matches[0], nil
}

// startPostgres makes a private cluster with initdb in a temporary
// folder (trust authentication) and starts postgres on a free loopback
// port, as the user postgres (nobody when there is none) through setpriv
// when run as root: PostgreSQL refuses to run as root. It returns the
// connection string and a function that stops the server and removes
// the cluster.
func startPostgres() (string, func(), error) {
	initdb, err := pgBinary("initdb")
	if err != nil {
		return "", nil, err
	}
	postgres, err := pgBinary("postgres")
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "vigil-ebpf-overhead-pg-")
	if err != nil {
		return "", nil, err
	}
	removeDir := func() { _ = os.RemoveAll(dir) }
	var asUser []string
	if os.Geteuid() == 0 {
		uid, gid := 65534, 65534
		if u, err := user.Lookup("postgres"); err == nil {
			uid, _ = strconv.Atoi(u.Uid)
			gid, _ = strconv.Atoi(u.Gid)
		}
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			removeDir()
			return "", nil, fmt.Errorf("setpriv (util-linux) is needed to run PostgreSQL as a user other than root: %w", err)
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			removeDir()
			return "", nil, err
		}
		asUser = []string{setpriv, "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--clear-groups"}
	}
	data := filepath.Join(dir, "data")
	argv := append(slices.Clone(asUser), initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		removeDir()
		return "", nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	addr, port, err := freeLoopbackAddr()
	if err != nil {
		removeDir()
		return "", nil, err
	}
	argv = append(slices.Clone(asUser), postgres, "-D", data, "-p", port, "-c", "listen_addresses=127.0.0.1",
		"-c", "unix_socket_directories="+dir, "-c", "fsync=off", "-c", "ssl=off", "-c", "max_connections=20")
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	dsn := fmt.Sprintf("host=127.0.0.1 port=%s user=postgres dbname=postgres sslmode=disable", port)
	// Ready when a login succeeds (a server still starting refuses it).
	stop, err := startServer("postgres on "+addr, cmd, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, dsn)
		if err != nil {
			return err
		}
		return c.Close(ctx)
	})
	if err != nil {
		removeDir()
		return "", nil, err
	}
	return dsn, func() { stop(); removeDir() }, nil
}

// pgLoop sends n queries (SELECT 1) over one connection (made anew each
// round, outside the time), one at a time, and reads each row: with the
// simple query protocol (one Query message) or, when extended, the
// extended protocol (Bind, Describe, Execute, Sync of a statement pgx
// prepared on first use; SELECT $1::int4 with 1, as pgx sends a query
// without arguments by the simple protocol).
func pgLoop(dsn string, n int, extended bool) (time.Duration, error) {
	ctx := context.Background()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer c.Close(ctx)
	var v int32
	query := func() error { return c.QueryRow(ctx, "SELECT 1", pgx.QueryExecModeSimpleProtocol).Scan(&v) }
	if extended {
		query = func() error { return c.QueryRow(ctx, "SELECT $1::int4", 1).Scan(&v) }
	}
	start := time.Now()
	for range n {
		if err := query(); err != nil {
			return 0, err
		}
		if v != 1 {
			return 0, fmt.Errorf("postgres answered %d to SELECT 1", v)
		}
	}
	return time.Since(start), nil
}
