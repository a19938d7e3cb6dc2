//go:build linux

package ebpf

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.opentelemetry.io/collector/pdata/ptrace"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// TestPostgres runs Debian's PostgreSQL 15 with psql (simple query
// protocol) and pgx (extended protocol with its statement cache, a
// pipelined batch, and the simple protocol), each client in a cgroup of
// its own, and checks the client and server counts exactly against what
// they sent, errors included.
func TestPostgres(t *testing.T) { forEachHTTPHook(t, testPostgres) }

func testPostgres(t *testing.T, hook string) {
	srv := testenv.StartPostgres(t) // before the collector: its readiness check is not counted
	psql := testenv.PostgresBinary(t, "psql")
	env := startCollector(t, spansConfig(hook))
	requireHTTPHook(t, env, hook)
	own := serverInCgroup(t, env, srv.Process, "vigil-ebpf-test-postgres-server.service")

	const psqlUnit = "vigil-ebpf-test-psql.service"
	psqlCg := testCgroup(t, psqlUnit)
	env.knownCgroup(t, psqlCg)
	for _, c := range []struct {
		sql  []string
		fail bool
	}{
		{[]string{"CREATE TABLE t (id int PRIMARY KEY, v text)"}, false},
		{[]string{"INSERT INTO t VALUES (1, 'a'), (2, 'b')"}, false},
		{[]string{"SELECT * FROM t"}, false},
		{[]string{"SELECT * FROM nosuchtable"}, true},       // 42P01
		{[]string{"INSERT INTO t VALUES (1, 'dup')"}, true}, // 23505
		{[]string{"BEGIN", "UPDATE t SET v = 'c' WHERE id = 2", "COMMIT"}, false},
		{[]string{"  /* a comment */ select count(*) from t"}, false},
	} {
		args := []string{psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", srv.DSN()}
		for _, q := range c.sql {
			args = append(args, "-c", q)
		}
		out, err := inCgroup(psqlCg, args...).CombinedOutput()
		if (err != nil) != c.fail {
			t.Fatalf("psql %q: %v (want failure: %v)\n%s", c.sql, err, c.fail, out)
		}
	}

	const pgxUnit = "vigil-ebpf-test-pgx.service"
	pgxCg := testCgroup(t, pgxUnit)
	env.knownCgroup(t, pgxCg)
	if out, err := helperCmd(t, pgxCg, "pgx-client", srv.DSN()).CombinedOutput(); err != nil {
		t.Fatalf("pgx client: %v\n%s", err, out)
	}

	type series map[string]string
	// Both sides name the address the clients dialled (host=127.0.0.1
	// port=…): the server's on the client side, the listening one on the
	// server's.
	dest := srv.Addr
	client := func(unit, cmd, errClass string) series {
		return series{"unit": unit, "kind": "client", "destination": dest, "command": cmd, "error": errClass}
	}
	// The server side: the postgres backends' unit (serverInCgroup).
	onServer := func(l series) series {
		l["kind"] = "server"
		l["destination"] = dest
		for k, v := range own {
			l[k] = v
		}
		return l
	}
	server := func(cmd, errClass string) series {
		return onServer(series{"kind": "server", "command": cmd, "error": errClass})
	}
	checks := []struct {
		labels series
		want   float64
	}{
		{client(psqlUnit, "CREATE", "none"), 1},
		{client(psqlUnit, "INSERT", "none"), 1},
		{client(psqlUnit, "SELECT", "none"), 2},
		{client(psqlUnit, "SELECT", "42"), 1},
		{client(psqlUnit, "INSERT", "23"), 1},
		{client(psqlUnit, "BEGIN", "none"), 1},
		{client(psqlUnit, "UPDATE", "none"), 1},
		{client(psqlUnit, "COMMIT", "none"), 1},
		{client(pgxUnit, "INSERT", "none"), 2},
		{client(pgxUnit, "SELECT", "none"), 6},
		{client(pgxUnit, "SELECT", "42"), 1},
		{client(pgxUnit, "INSERT", "23"), 1},
		{client(pgxUnit, "DELETE", "none"), 1},
		{client(pgxUnit, "UPDATE", "none"), 1},
		{server("CREATE", "none"), 1},
		{server("INSERT", "none"), 3},
		{server("SELECT", "none"), 8},
		{server("SELECT", "42"), 2},
		{server("INSERT", "23"), 2},
		{server("BEGIN", "none"), 1},
		{server("UPDATE", "none"), 2},
		{server("COMMIT", "none"), 1},
		{server("DELETE", "none"), 1},
	}
	for _, c := range checks {
		testenv.EventuallyTrue(t, 30*time.Second, fmt.Sprintf("vigil_postgres_requests_total%v", c.labels), func() bool {
			return env.value(t, "vigil_postgres_requests_total", c.labels) >= c.want
		})
	}
	time.Sleep(200 * time.Millisecond) // anything counted twice would show now
	for _, c := range checks {
		if got := env.value(t, "vigil_postgres_requests_total", c.labels); got != c.want {
			t.Errorf("vigil_postgres_requests_total%v = %v, want %v", c.labels, got, c.want)
		}
		if got := env.value(t, "vigil_postgres_request_duration_seconds", c.labels); got != c.want {
			t.Errorf("vigil_postgres_request_duration_seconds_count%v = %v, want %v", c.labels, got, c.want)
		}
	}
	// Nothing else: the totals are the sums above.
	for _, side := range []struct {
		labels series
		want   float64
	}{
		{series{"kind": "client", "unit": psqlUnit}, 9},
		{series{"kind": "client", "unit": pgxUnit}, 12},
		{series{"kind": "client", "unit": psqlUnit, "destination": dest}, 9},
		{series{"kind": "client", "unit": pgxUnit, "destination": dest}, 12},
		{onServer(series{"kind": "server"}), 21},
	} {
		if got := env.value(t, "vigil_postgres_requests_total", side.labels); got != side.want {
			t.Errorf("vigil_postgres_requests_total%v = %v, want %v", side.labels, got, side.want)
		}
	}
	// Spans: all sampled here (ratio 1, no rate cap), errors always; both
	// sides, named by the SQL command.
	port := int64(srv.Port)
	dbSpans := func(kind ptrace.SpanKind, op, errType string) []ptrace.Span {
		return env.findSpans(func(s ptrace.Span) bool {
			sys, ok1 := s.Attributes().Get("db.system.name")
			p, ok2 := s.Attributes().Get("server.port")
			e, failed := s.Attributes().Get("error.type")
			errOK := (!failed && errType == "") || (failed && e.Str() == errType)
			return ok1 && ok2 && errOK && s.Kind() == kind && sys.Str() == "postgresql" && s.Name() == op && p.Int() == port
		})
	}
	for _, kind := range []ptrace.SpanKind{ptrace.SpanKindClient, ptrace.SpanKindServer} {
		for _, c := range []struct {
			op, errType string
			want        int
		}{{"SELECT", "", 8}, {"SELECT", "42", 2}, {"INSERT", "23", 2}} {
			testenv.EventuallyTrue(t, 30*time.Second, "PostgreSQL spans", func() bool { return len(dbSpans(kind, c.op, c.errType)) >= c.want })
			spans := dbSpans(kind, c.op, c.errType)
			if len(spans) != c.want {
				t.Errorf("%s %s spans with error.type %q: %d, want %d", kind, c.op, c.errType, len(spans), c.want)
			}
			if c.errType != "" && len(spans) > 0 && spans[0].Status().Code() != ptrace.StatusCodeError {
				t.Errorf("%s %s span: status %v, want error", kind, c.op, spans[0].Status().Code())
			}
		}
	}
	t.Logf("rejected: malformed %v, unexpected %v; unmatched %v",
		env.value(t, "vigil_ebpf_protocol_rejected_total", map[string]string{"protocol": "postgres", "reason": "malformed"}),
		env.value(t, "vigil_ebpf_protocol_rejected_total", map[string]string{"protocol": "postgres", "reason": "unexpected"}),
		env.value(t, "vigil_ebpf_protocol_unmatched_total", map[string]string{"protocol": "postgres"}))
}

// pgxClient sends TestPostgres's queries with pgx over one connection:
// the extended protocol with pgx's statement cache (a statement is
// prepared once, then bound and executed), a batch sent in one write, and
// the simple protocol.
func pgxClient(dsn string) error {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	const insert = "INSERT INTO t VALUES ($1, $2)"
	for _, id := range []int{3, 4} {
		if _, err := conn.Exec(ctx, insert, id, "x"); err != nil {
			return err
		}
	}
	for range 3 {
		var v string
		if err := conn.QueryRow(ctx, "SELECT v FROM t WHERE id = $1", 1).Scan(&v); err != nil {
			return err
		}
	}
	// The prepare fails: the query never runs.
	if _, err := conn.Exec(ctx, "SELECT * FROM nosuchtable WHERE id = $1", 1); !isSQLState(err, "42P01") {
		return fmt.Errorf("SELECT from a missing table: want 42P01, got %v", err)
	}
	if _, err := conn.Exec(ctx, insert, 1, "dup"); !isSQLState(err, "23505") {
		return fmt.Errorf("duplicate INSERT: want 23505, got %v", err)
	}
	// Three queries in one write, one Sync.
	b := &pgx.Batch{}
	for i := range 3 {
		b.Queue("SELECT $1::int + 1", i)
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "UPDATE t SET v = 'y' WHERE id = 4", pgx.QueryExecModeSimpleProtocol); err != nil {
		return err
	}
	if _, err := conn.Exec(ctx, "DELETE FROM t WHERE id = 3", pgx.QueryExecModeSimpleProtocol); err != nil {
		return err
	}
	return nil
}

func isSQLState(err error, code string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && strings.EqualFold(pe.Code, code)
}
