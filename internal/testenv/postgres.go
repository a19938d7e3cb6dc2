package testenv

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"time"
)

// Postgres is a PostgreSQL server (Debian's, 15) started by
// [StartPostgres]: a private cluster made by initdb in a temporary folder,
// trust authentication, loopback TCP only, no TLS unless [PostgresTLS].
type Postgres struct {
	// Addr is the server's address, 127.0.0.1:<port>; Port its port.
	Addr string
	Port int
	// User is the superuser (postgres) and Database the database
	// (postgres) a client logs in to; no password.
	User, Database string
	// DataDir is the cluster's folder.
	DataDir string
	// Process is the postmaster process.
	*Process
}

// DSN returns a libpq connection string for the server
// (host=127.0.0.1 port=… user=postgres dbname=postgres sslmode=disable).
func (p *Postgres) DSN() string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=%s sslmode=disable", p.Port, p.User, p.Database)
}

// PostgresBinary returns the path of one of PostgreSQL's programs
// (postgres, initdb, psql, …): from $VIGIL_TESTENV_BIN or PATH, else from
// Debian's /usr/lib/postgresql/<version>/bin (the newest version), which
// is not on PATH. A missing program skips the test (fails it under CI).
func PostgresBinary(t TB, name string) string {
	t.Helper()
	if short() {
		t.Skipf("-short (make test-unit): needs the test server %s", name)
	}
	if p, err := LookBinary(name); err == nil {
		return p
	}
	matches, _ := filepath.Glob(filepath.Join("/usr/lib/postgresql", "*", "bin", name))
	sort.Slice(matches, func(i, j int) bool { return pgVersion(matches[i]) > pgVersion(matches[j]) })
	if len(matches) == 0 {
		Unavailable(t, "%s not installed (not on PATH nor in /usr/lib/postgresql/*/bin); run hack/install-deps.sh (Debian packages in hack/apt/*.txt)", name)
	}
	return matches[0]
}

func pgVersion(bin string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(bin))))
	return v
}

// StartPostgres makes a cluster with initdb and starts postgres on a free
// 127.0.0.1 port, and waits until it accepts a login. PostgreSQL refuses to
// run as root: under root the cluster belongs to, and the server runs as,
// the user postgres (nobody when there is none), through setpriv.
func StartPostgres(t TB, opts ...PostgresOption) *Postgres {
	t.Helper()
	var o pgOptions
	for _, f := range opts {
		f(&o)
	}
	initdb, postgres := PostgresBinary(t, "initdb"), PostgresBinary(t, "postgres")
	// Not t.TempDir(): its parents are private to the test's user.
	dir, err := os.MkdirTemp("", "vigil-postgres-")
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	var asUser []string
	if os.Geteuid() == 0 {
		uid, gid := pgUser()
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		setpriv, err := exec.LookPath("setpriv")
		if err != nil {
			Unavailable(t, "setpriv (util-linux) is needed to run PostgreSQL as a user other than root: %v", err)
		}
		asUser = []string{setpriv, "--reuid=" + strconv.Itoa(uid), "--regid=" + strconv.Itoa(gid), "--clear-groups"}
	}
	p := &Postgres{User: "postgres", Database: "postgres", DataDir: filepath.Join(dir, "data")}
	argv := append(append([]string{}, asUser...), initdb, "-D", p.DataDir, "-U", p.User, "--auth=trust", "-E", "UTF8",
		"--no-sync", "--no-instructions")
	if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	if o.cert != nil {
		// The server's own files: the key readable by it alone, as
		// PostgreSQL demands.
		for name, b := range map[string][]byte{"server.crt": o.cert, "server.key": o.key} {
			f := filepath.Join(dir, name)
			if err := os.WriteFile(f, b, 0o600); err != nil {
				t.Fatalf("testenv: %v", err)
			}
			if os.Geteuid() == 0 {
				uid, gid := pgUser()
				if err := os.Chown(f, uid, gid); err != nil {
					t.Fatalf("testenv: %v", err)
				}
			}
		}
	}
	p.Process = StartOnFreePorts(t, 1, func(ports []int) Command {
		p.Port = ports[0]
		p.Addr = hostPort(ports[0])
		args := []string{"-D", p.DataDir, "-p", strconv.Itoa(p.Port), "-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories=" + dir, "-c", "fsync=off", "-c", "ssl=off", "-c", "max_connections=20"}
		if o.cert != nil {
			args = append(args, "-c", "ssl=on", "-c", "ssl_cert_file="+filepath.Join(dir, "server.crt"),
				"-c", "ssl_key_file="+filepath.Join(dir, "server.key"))
		}
		path := postgres
		if len(asUser) > 0 { // setpriv execs postgres: the process stopped is the postmaster
			path, args = asUser[0], append(append(append([]string{}, asUser[1:]...), postgres), args...)
		}
		// SIGTERM is a smart shutdown: it waits for clients, which a
		// test has closed by its cleanup.
		return Command{Name: "postgres", Path: path, Args: args, Dir: dir, Ready: pgReady(p.Addr, p.User, p.Database),
			StopTimeout: 10 * time.Second}
	})
	return p
}

// PostgresOption changes how [StartPostgres] starts the server.
type PostgresOption func(*pgOptions)

type pgOptions struct{ cert, key []byte }

// PostgresTLS turns TLS on (ssl=on) with the PEM certificate and key
// given; clients may still connect without it (trust authentication for
// both). Connect with [Postgres.DSN] and sslmode=require in place of
// disable.
func PostgresTLS(certPEM, keyPEM []byte) PostgresOption {
	return func(o *pgOptions) { o.cert, o.key = certPEM, keyPEM }
}

// pgUser returns the uid and gid PostgreSQL runs as under root.
func pgUser() (int, int) {
	for _, name := range []string{"postgres", "nobody"} {
		u, err := user.Lookup(name)
		if err != nil {
			continue
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		return uid, gid
	}
	return 65534, 65534
}

// pgReady returns a readiness check that passes when the server at addr
// answers a startup message for user and database with an authentication
// request (a server still starting answers with an error). No query is
// sent.
func pgReady(addr, user, database string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		body := []byte{0, 3, 0, 0} // protocol 3.0
		for _, kv := range []string{"user", user, "database", database} {
			body = append(append(body, kv...), 0)
		}
		body = append(body, 0)
		msg := binary.BigEndian.AppendUint32(nil, uint32(len(body)+4))
		if _, err := c.Write(append(msg, body...)); err != nil {
			return err
		}
		var typ [1]byte
		if _, err := io.ReadFull(c, typ[:]); err != nil {
			return err
		}
		if typ[0] != 'R' {
			return fmt.Errorf("%w: startup answered with message %q", errNotYet, typ[0])
		}
		_, _ = c.Write([]byte{'X', 0, 0, 0, 4}) // Terminate
		return nil
	}
}
