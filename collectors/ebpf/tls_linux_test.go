//go:build linux

package ebpf

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"debug/elf"
	"debug/gosym"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/vigil-agent/vigil/internal/testenv"
)

// tlsRequests are what the HTTPS client helper asks, in order, over one
// keep-alive connection: path and status, each several times.
var tlsRequests = []struct {
	path   string
	status int
	n      int
}{{"/ok", 200, 5}, {"/missing", 404, 3}, {"/fail", 500, 2}}

// writeTestCert makes a self-signed certificate for 127.0.0.1 and
// localhost in dir and returns the certificate and key files.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// httpsServer is the helper: a Go net/http HTTPS server (HTTP/1.1 only)
// with the certificate and key of arg ("cert,key"); it prints its address
// and serves until its standard input closes.
func httpsServer(arg string) error {
	cert, key, _ := strings.Cut(arg, ",")
	key, h2, _ := strings.Cut(key, ",") // "h2": HTTP/2 offered too
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("fine\n")) })
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "broken", http.StatusInternalServerError) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "down", http.StatusServiceUnavailable) })
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){}} // no HTTP/2
	if h2 == "h2" {
		srv.TLSNextProto = nil // net/http's default: h2 by ALPN
	}
	go func() { _ = srv.ServeTLS(ln, cert, key) }()
	fmt.Println(ln.Addr().String())
	_, _ = io.Copy(io.Discard, os.Stdin)
	return srv.Close()
}

// httpsClient is the helper: it waits for a line on its standard input
// (the test has seen it covered), then sends tlsRequests to the HTTPS
// server of arg ("addr,cert") over one keep-alive connection.
func httpsClient(arg string) error {
	addr, cert, _ := strings.Cut(arg, ",")
	cert, h2, _ := strings.Cut(cert, ",") // "h2": HTTP/2 asked for
	proto, requests := "HTTP/1.1", tlsRequests
	if h2 == "h2" {
		proto, requests = "HTTP/2.0", tlsH2Requests
	}
	pem, err := os.ReadFile(cert)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	cl := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, TLSClientConfig: &tls.Config{RootCAs: pool},
		ForceAttemptHTTP2: h2 == "h2"}}
	defer cl.CloseIdleConnections()
	for _, r := range requests {
		for range r.n {
			resp, err := cl.Get("https://" + addr + r.path)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != r.status || resp.Proto != proto || resp.TLS == nil {
				return fmt.Errorf("GET %s: %s %d, want %s over TLS %d", r.path, resp.Proto, resp.StatusCode, proto, r.status)
			}
		}
	}
	return nil
}

// tlsServer starts the HTTPS server helper in its own cgroup and returns
// its address and process.
func tlsServer(t *testing.T, exe, unit, cert, key string) (string, *exec.Cmd) {
	t.Helper()
	cg := testCgroup(t, unit)
	cmd := helperCmd(t, cg, "https-server", cert+","+key)
	if exe != "" {
		cmd.Args[len(cmd.Args)-3] = exe
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); _ = cmd.Wait() })
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("https server: %v", err)
	}
	return strings.TrimSpace(addr), cmd
}

// covered waits until the collector follows the TLS of pid.
func (e *testEnv) covered(t *testing.T, pid int) {
	t.Helper()
	testenv.EventuallyTrue(t, 30*time.Second, "the collector follows the TLS of process "+strconv.Itoa(pid), func() bool {
		return e.c.tls != nil && e.c.tls.covers(uint32(pid))
	})
}

// runTLSClient runs the HTTPS client helper (exe: the test binary when
// empty) in the cgroup of unit, lets it start once wait says so, and
// waits for it.
func runTLSClient(t *testing.T, exe, unit, arg string, wait func(pid int)) {
	t.Helper()
	cg := testCgroup(t, unit)
	cmd := helperCmd(t, cg, "https-client", arg)
	if exe != "" {
		cmd.Args[len(cmd.Args)-3] = exe
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// sh execs the helper in the same process.
	wait(cmd.Process.Pid)
	_, _ = stdin.Write([]byte("go\n"))
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("https client: %v\n%s", err, out.String())
	}
}

// TestTLSGo: a Go net/http HTTPS server and a Go client, each its own
// process and cgroup; every request is counted once on each side with its
// route and status class, from the plaintext of crypto/tls (uprobes on
// (*Conn).Write and on the return instructions of (*Conn).Read); the
// ciphertext on their sockets adds nothing. A copy of the client with its
// symbol table and DWARF stripped is followed through .gopclntab.
func TestTLSGo(t *testing.T) { forEachHTTPHook(t, testTLSGo) }

func testTLSGo(t *testing.T, hook string) { tlsGo(t, startCollector(t, spansConfig(hook)), hook) }

// TestTLSPerProbeLinks runs the Go and OpenSSL TLS tests with the kernel's
// uprobe_multi links pretended missing (a fake: this kernel has them, Linux
// 6.6+): the programs are loaded as plain uprobes and attached with one
// link per probe, and every request is counted the same. On the syscall
// HTTP path, which kernels without uprobe_multi mostly use (before 6.4).
func TestTLSPerProbeLinks(t *testing.T) {
	noMulti := func(caps *capabilities) {
		caps.features["uprobe_multi"] = errors.New("uprobe_multi links not supported (pretended by the test)")
	}
	for _, c := range []struct {
		name string
		test func(*testing.T, *testEnv, string)
	}{{"go", tlsGo}, {"openssl", tlsOpenSSL}} {
		t.Run(c.name, func(t *testing.T) {
			c.test(t, startCollectorPretending(t, spansConfig("syscalls"), noMulti), "syscalls")
		})
	}
}

// tlsLinks checks how the files of TLS library lib are attached: with
// uprobe_multi, when the collector reports it available, one link per
// program and kind (entry, return), whose offsets, cookies and kind read
// back from the kernel are exactly the file's probes; otherwise one link
// per probe.
func (e *testEnv) tlsLinks(t *testing.T, lib string) {
	t.Helper()
	multi := e.value(t, "vigil_ebpf_feature_available", map[string]string{"feature": "uprobe_multi"}) == 1
	if multi != e.c.tls.multi {
		t.Errorf("vigil_ebpf_feature_available{feature=uprobe_multi} says %v, the TLS discovery attaches with uprobe_multi %v",
			multi, e.c.tls.multi)
	}
	tm := e.c.tls
	tm.mu.Lock()
	defer tm.mu.Unlock()
	progName := map[ebpf.ProgramID]string{}
	for n, p := range tm.progs {
		info, err := p.Info()
		if err != nil {
			t.Fatal(err)
		}
		id, _ := info.ID()
		progName[id] = n
	}
	files := 0
	for k, a := range tm.attached {
		if a.library != lib {
			continue
		}
		files++
		probes := tm.inspected[k].probes
		if !multi {
			if len(a.links) != len(probes) {
				t.Errorf("%s: %d links for %d probes, want one each", a.path, len(a.links), len(probes))
			}
			continue
		}
		type site struct {
			prog           string
			ret            bool
			offset, cookie uint64
		}
		var want, got []site
		kinds := map[site]bool{}
		for _, p := range probes {
			want = append(want, site{p.prog, p.ret, p.offset, p.cookie})
			kinds[site{prog: p.prog, ret: p.ret}] = true
		}
		if len(a.links) != len(kinds) {
			t.Errorf("%s: %d links for %d programs and kinds, want one each", a.path, len(a.links), len(kinds))
		}
		for _, l := range a.links {
			info, err := l.Info()
			if err != nil {
				t.Fatalf("%s: link info: %v", a.path, err)
			}
			um := info.UprobeMulti()
			if um == nil {
				t.Fatalf("%s: a %v link, want uprobe_multi", a.path, info.Type)
			}
			offs, ok := um.Offsets()
			if !ok {
				t.Fatalf("%s: the kernel did not give the link's offsets", a.path)
			}
			for _, o := range offs {
				got = append(got, site{progName[info.Program], um.Flags&1 != 0, o.Offset, o.Cookie}) // BPF_F_UPROBE_MULTI_RETURN
			}
		}
		order := func(x, y site) int {
			return cmp.Or(strings.Compare(x.prog, y.prog), cmp.Compare(x.offset, y.offset), cmp.Compare(x.cookie, y.cookie),
				compareBool(x.ret, y.ret))
		}
		slices.SortFunc(want, order)
		slices.SortFunc(got, order)
		if !slices.Equal(got, want) {
			t.Errorf("%s: the uprobe_multi links hold\n%v\nwant the probes\n%v", a.path, got, want)
		}
	}
	if files == 0 {
		t.Errorf("no %s file attached", lib)
	}
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func tlsGo(t *testing.T, env *testEnv, hook string) {
	requireHTTPHook(t, env, hook)
	if env.c.tls == nil {
		t.Fatal("the TLS programs did not load")
	}
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	const srvUnit, cliUnit, strippedUnit = "vigil-ebpf-test-tls-server.service", "vigil-ebpf-test-tls-client.service",
		"vigil-ebpf-test-tls-stripped.service"
	addr, srv := tlsServer(t, "", srvUnit, cert, key)
	env.covered(t, srv.Process.Pid)
	runTLSClient(t, "", cliUnit, addr+","+cert, func(pid int) { env.covered(t, pid) })
	env.tlsLinks(t, "go")

	// The same client stripped of its symbols and DWARF: another file,
	// found when it execs, its functions read from .gopclntab.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	stripped := filepath.Join(dir, "stripped.test")
	if out, err := exec.Command("objcopy", "--strip-all", exe, stripped).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	runTLSClient(t, stripped, strippedUnit, addr+","+cert, func(pid int) { env.covered(t, pid) })

	type series map[string]string
	total := 0
	for _, r := range tlsRequests {
		class := strconv.Itoa(r.status/100) + "xx"
		for _, c := range []struct {
			kind, unit string
			n          int
		}{{"client", cliUnit, r.n}, {"client", strippedUnit, r.n}, {"server", srvUnit, 2 * r.n}} {
			l := series{"kind": c.kind, "unit": c.unit, "method": "GET", "route": r.path, "status_class": class}
			want := float64(c.n)
			testenv.EventuallyTrue(t, 30*time.Second, "vigil_http_requests_total", func() bool {
				return env.value(t, "vigil_http_requests_total", l) >= want
			})
			if got := env.value(t, "vigil_http_requests_total", l); got != want {
				t.Errorf("vigil_http_requests_total%v = %v, want %v", l, got, want)
			}
		}
		total += r.n
	}
	// Nothing else under these units: no request from the ciphertext.
	for _, u := range []string{srvUnit, cliUnit, strippedUnit} {
		want := float64(total)
		if u == srvUnit {
			want *= 2
		}
		if got := env.value(t, "vigil_http_requests_total", series{"unit": u}); got != want {
			t.Errorf("vigil_http_requests_total{unit=%q} sums to %v, want %v", u, got, want)
		}
	}
	for _, lib := range []string{"go"} {
		if v := env.value(t, "vigil_ebpf_tls_processes", series{"library": lib}); v < 1 {
			t.Errorf("vigil_ebpf_tls_processes{library=%q} = %v", lib, v)
		}
	}
	// Spans say https.
	var spans []ptrace.Span
	testenv.EventuallyTrue(t, 30*time.Second, "the TLS server spans", func() bool {
		spans = env.findSpans(func(s ptrace.Span) bool {
			return s.Kind() == ptrace.SpanKindServer && strAttr(s, "url.scheme") == "https" &&
				strAttr(s, "server.port") == strings.Split(addr, ":")[1]
		})
		return len(spans) >= 2*total
	})
	for _, s := range spans {
		if v, ok := s.Attributes().Get("tls"); !ok || !v.Bool() {
			t.Errorf("server span %q without tls=true: %v", s.Name(), s.Attributes().AsRaw())
		}
	}
}

// TestTLSOpenSSL: curl (Debian's, linked with OpenSSL's libssl.so.3)
// against the Go HTTPS server: each request counted once on curl's side
// from SSL_write and SSL_read (uprobe and uretprobe; the descriptor is the
// one the calls' own socket reads and writes used), and on the server's
// from crypto/tls.
// Both HTTP paths: the descriptor is noted by the socket programs or by
// the syscall tracepoints'.
func TestTLSOpenSSL(t *testing.T) { forEachHTTPHook(t, testTLSOpenSSL) }

func testTLSOpenSSL(t *testing.T, hook string) {
	tlsOpenSSL(t, startCollector(t, spansConfig(hook)), hook)
}

func tlsOpenSSL(t *testing.T, env *testEnv, hook string) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Fatalf("curl (hack/apt/ebpf.txt): %v", err)
	}
	requireHTTPHook(t, env, hook)
	if env.c.tls == nil {
		t.Fatal("the TLS programs did not load")
	}
	if v := env.value(t, "vigil_ebpf_tls_attached", map[string]string{"library": "openssl"}); v < 1 {
		t.Fatalf("vigil_ebpf_tls_attached{library=openssl} = %v: the host's libssl is not attached", v)
	}
	env.tlsLinks(t, "openssl")
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	const srvUnit, curlUnit = "vigil-ebpf-test-tls-curl-server.service", "vigil-ebpf-test-tls-curl.service"
	addr, srv := tlsServer(t, "", srvUnit, cert, key)
	env.covered(t, srv.Process.Pid)
	cg := testCgroup(t, curlUnit)
	env.knownCgroup(t, cg)
	// One curl, one connection: its URLs reuse it.
	args := []string{curl, "--http1.1", "--silent", "--show-error", "--cacert", cert, "--write-out", "%{http_code} %{num_connects}\n"}
	total := 0
	for _, r := range tlsRequests {
		for range r.n {
			args = append(args, "--output", "/dev/null", "https://"+addr+r.path)
			total++
		}
	}
	out, err := inCgroup(cg, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if n := strings.Count(string(out), " 1\n"); n != 1 {
		t.Errorf("curl made %d connections, want 1:\n%s", n, out)
	}
	type series map[string]string
	for _, r := range tlsRequests {
		class := strconv.Itoa(r.status/100) + "xx"
		for _, c := range []struct{ kind, unit string }{{"client", curlUnit}, {"server", srvUnit}} {
			l := series{"kind": c.kind, "unit": c.unit, "method": "GET", "route": r.path, "status_class": class}
			want := float64(r.n)
			testenv.EventuallyTrue(t, 30*time.Second, "vigil_http_requests_total", func() bool {
				return env.value(t, "vigil_http_requests_total", l) >= want
			})
			if got := env.value(t, "vigil_http_requests_total", l); got != want {
				t.Errorf("vigil_http_requests_total%v = %v, want %v", l, got, want)
			}
		}
	}
	for _, u := range []string{curlUnit, srvUnit} {
		if got := env.value(t, "vigil_http_requests_total", series{"unit": u}); got != float64(total) {
			t.Errorf("vigil_http_requests_total{unit=%q} sums to %v, want %v", u, got, total)
		}
	}
	var spans []ptrace.Span
	testenv.EventuallyTrue(t, 30*time.Second, "curl's client spans", func() bool {
		spans = env.findSpans(func(s ptrace.Span) bool {
			return s.Kind() == ptrace.SpanKindClient && strings.HasPrefix(strAttr(s, "url.full"), "https://") &&
				strAttr(s, "server.port") == strings.Split(addr, ":")[1]
		})
		return len(spans) >= total
	})
	if len(spans) != total {
		t.Errorf("%d https client spans to the server, want %d", len(spans), total)
	}
}

// TestTLSLimit: with max_tls_targets 1, taken by the host's libssl, the
// Go HTTPS server is not attached and its process is counted not covered
// (reason limit), not silently missed.
func TestTLSLimit(t *testing.T) {
	cfg := spansConfig("socket")
	cfg.MaxTLSTargets = 1
	env := startCollector(t, cfg)
	if env.c.tls == nil {
		t.Fatal("the TLS programs did not load")
	}
	if v := env.value(t, "vigil_ebpf_tls_attached", map[string]string{"library": "openssl"}); v != 1 {
		t.Fatalf("vigil_ebpf_tls_attached{library=openssl} = %v, want the host's libssl", v)
	}
	cert, key := writeTestCert(t, t.TempDir())
	_, srv := tlsServer(t, "", "vigil-ebpf-test-tls-limit.service", cert, key)
	pid := uint32(srv.Process.Pid)
	testenv.EventuallyTrue(t, 30*time.Second, "the server counted not covered", func() bool {
		return env.c.tls.uncoveredReason(pid) == uncoveredLimit
	})
	if env.c.tls.covers(pid) {
		t.Error("the server is covered beyond max_tls_targets")
	}
	if v := env.value(t, "vigil_ebpf_tls_uncovered_processes", map[string]string{"reason": "limit"}); v < 1 {
		t.Errorf("vigil_ebpf_tls_uncovered_processes{reason=limit} = %v", v)
	}
	if v := env.value(t, "vigil_ebpf_tls_attached", map[string]string{"library": "go"}); v != 0 {
		t.Errorf("vigil_ebpf_tls_attached{library=go} = %v beyond the limit", v)
	}
}

// TestTLSInspectHostile: files that are not ELF, or ELF cut short, are
// refused or found to use no TLS, without a panic.
func TestTLSInspectHostile(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	whole, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	junk := make([]byte, 4096)
	_, _ = rand.Read(junk)
	for name, b := range map[string][]byte{
		"empty": nil, "junk": junk, "elf-magic-only": []byte("\x7fELF\x02\x01\x01"),
		"cut-4k": whole[:4096], "cut-half": whole[:len(whole)/2],
	} {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := inspectTLSBinary(p)
		if err == nil && len(b.probes) > 0 {
			t.Errorf("%s: %d probes from a broken file", name, len(b.probes))
		}
	}
	// The test binary itself: crypto/tls found, Read has return
	// instructions, and the DWARF layout (when built with it) agrees
	// with the known one.
	b, err := inspectTLSBinary(exe)
	if err != nil || b.library != tlsLibGo || b.reason != "" {
		t.Fatalf("the test binary: %+v, %v", b, err)
	}
	rets := 0
	for _, p := range b.probes {
		if p.prog == "go_tls_read_ret" {
			rets++
		}
		if p.cookie != 1<<63|16<<24 {
			t.Errorf("probe %s cookie %#x, want the known layout's", p.prog, p.cookie)
		}
	}
	if rets == 0 {
		t.Error("no return instruction found in crypto/tls.(*Conn).Read")
	}
}

// TestTLSPostgres: psql with sslmode=require against Debian's PostgreSQL
// 15 with ssl=on (both link OpenSSL's libssl): each query counted once on
// psql's side and on the server's, with its command and error, from the
// plaintext of SSL_write and SSL_read.
func TestTLSPostgres(t *testing.T) { forEachHTTPHook(t, testTLSPostgres) }

func testTLSPostgres(t *testing.T, hook string) {
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir)
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartPostgres(t, testenv.PostgresTLS(certPEM, keyPEM)) // before the collector: its readiness check is not counted
	psql := testenv.PostgresBinary(t, "psql")
	env := startCollector(t, spansConfig(hook))
	requireHTTPHook(t, env, hook)
	own := serverInCgroup(t, env, srv.Process, "vigil-ebpf-test-tls-postgres-server.service")
	if v := env.value(t, "vigil_ebpf_tls_attached", map[string]string{"library": "openssl"}); v < 1 {
		t.Fatalf("vigil_ebpf_tls_attached{library=openssl} = %v: the host's libssl is not attached", v)
	}
	const unit = "vigil-ebpf-test-tls-psql.service"
	cg := testCgroup(t, unit)
	env.knownCgroup(t, cg)
	dsn := strings.Replace(srv.DSN(), "sslmode=disable", "sslmode=require", 1)
	for _, c := range []struct {
		sql  string
		fail bool
		want string
	}{
		{"SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", false, "t"}, // the connection is TLS
		{"CREATE TABLE tls_t (id int PRIMARY KEY)", false, ""},
		{"INSERT INTO tls_t VALUES (1), (2)", false, ""},
		{"SELECT count(*) FROM tls_t", false, "2"},
		{"SELECT * FROM nosuchtable", true, ""}, // 42P01
	} {
		out, err := inCgroup(cg, psql, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", dsn, "-c", c.sql).CombinedOutput()
		if (err != nil) != c.fail || (c.want != "" && strings.TrimSpace(string(out)) != c.want) {
			t.Fatalf("psql %q: %v (want failure: %v) %q, want %q", c.sql, err, c.fail, out, c.want)
		}
	}
	type series map[string]string
	// Both sides name the address psql dialled (the listening address on
	// the server's side).
	server := func(cmd, errClass string) series {
		l := series{"kind": "server", "destination": srv.Addr, "command": cmd, "error": errClass}
		for k, v := range own {
			l[k] = v
		}
		return l
	}
	client := func(cmd, errClass string) series {
		return series{"unit": unit, "kind": "client", "destination": srv.Addr, "command": cmd, "error": errClass}
	}
	checks := []struct {
		labels series
		want   float64
	}{
		{client("SELECT", "none"), 2}, {client("CREATE", "none"), 1}, {client("INSERT", "none"), 1}, {client("SELECT", "42"), 1},
		{server("SELECT", "none"), 2}, {server("CREATE", "none"), 1}, {server("INSERT", "none"), 1}, {server("SELECT", "42"), 1},
	}
	want := make([]tlsCount, len(checks))
	for i, c := range checks {
		want[i] = tlsCount{c.labels, c.want}
	}
	env.exactCounts(t, "vigil_postgres_requests_total", want)
	if got := env.value(t, "vigil_postgres_requests_total", series{"unit": unit}); got != 5 {
		t.Errorf("vigil_postgres_requests_total{unit=%q} sums to %v, want 5", unit, got)
	}
}

// TestTLSRedis: redis-cli --tls against Debian's redis-server on its TLS
// port (both link OpenSSL's libssl): each command counted once on the
// client's side and the server's, with its error.
func TestTLSRedis(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeTestCert(t, dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := testenv.StartRedis(t, testenv.RedisTLS(certFile, keyFile)) // before the collector: its readiness PINGs are not counted
	cli := testenv.Binary(t, "redis-cli")
	env := startCollector(t, spansConfig("socket"))
	if v := env.value(t, "vigil_ebpf_tls_attached", map[string]string{"library": "openssl"}); v < 1 {
		t.Fatalf("vigil_ebpf_tls_attached{library=openssl} = %v: the host's libssl is not attached", v)
	}
	own := serverInCgroup(t, env, srv.Process, "vigil-ebpf-test-tls-redis-server.service")
	const unit = "vigil-ebpf-test-tls-redis-cli.service"
	cg := testCgroup(t, unit)
	env.knownCgroup(t, cg)
	for _, args := range [][]string{
		{"SET", "greeting", "hello"},
		{"GET", "greeting"},
		{"LPUSH", "greeting", "x"}, // WRONGTYPE
		{"-r", "3", "INCR", "visits"},
	} {
		argv := append([]string{cli, "--tls", "--cacert", certFile, "-h", "127.0.0.1", "-p", strconv.Itoa(srv.TLSPort)}, args...)
		out, err := inCgroup(cg, argv...).CombinedOutput()
		if err != nil || strings.Contains(string(out), "Could not connect") || strings.Contains(string(out), "SSL") {
			t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
		}
	}
	type series map[string]string
	// Both sides name the TLS port redis-cli dialled (the listening
	// address on the server's side).
	dest := "127.0.0.1:" + strconv.Itoa(srv.TLSPort)
	server := func(cmd, errCode string) series {
		l := series{"kind": "server", "destination": dest, "command": cmd, "error": errCode}
		for k, v := range own {
			l[k] = v
		}
		return l
	}
	client := func(cmd, errCode string) series {
		return series{"unit": unit, "kind": "client", "destination": dest, "command": cmd, "error": errCode}
	}
	checks := []struct {
		labels series
		want   float64
	}{
		{client("SET", "none"), 1}, {client("GET", "none"), 1}, {client("LPUSH", "WRONGTYPE"), 1}, {client("INCR", "none"), 3},
		{server("SET", "none"), 1}, {server("GET", "none"), 1}, {server("LPUSH", "WRONGTYPE"), 1}, {server("INCR", "none"), 3},
	}
	want := make([]tlsCount, len(checks))
	for i, c := range checks {
		want[i] = tlsCount{c.labels, c.want}
	}
	env.exactCounts(t, "vigil_redis_requests_total", want)
	if got := env.value(t, "vigil_redis_requests_total", series{"unit": unit}); got != 6 {
		t.Errorf("vigil_redis_requests_total{unit=%q} sums to %v, want 6", unit, got)
	}
}

// findSymbols, which streams the tables, finds what debug/elf's full
// load finds, for a Go HTTPS client's functions and libssl's API. The
// client is built here with its symbol table: go test links the test
// binary without one (go test -c keeps it), as go build -ldflags=-s does.
func TestTLSFindSymbols(t *testing.T) {
	exe := buildGoWithSymbols(t)
	libs, _ := filepath.Glob("/usr/lib/*/libssl.so.3")
	for _, c := range []struct {
		path  string
		typ   elf.SectionType
		names []string
	}{
		{exe, elf.SHT_SYMTAB, []string{goTLSWrite, goTLSRead, "main.main", "runtime.main"}},
		{libs[0], elf.SHT_DYNSYM, []string{"SSL_write", "SSL_read", "SSL_write_ex", "SSL_read_ex"}},
	} {
		f, err := elf.Open(c.path)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := findSymbols(f, c.typ, c.names)
		load := f.Symbols
		if c.typ == elf.SHT_DYNSYM {
			load = f.DynamicSymbols
		}
		all, err := load()
		if err != nil || !ok {
			t.Fatalf("%s: %v %v", c.path, err, ok)
		}
		want := map[string]uint64{}
		for _, s := range all {
			for _, n := range c.names {
				if s.Name == n && elf.ST_TYPE(s.Info) == elf.STT_FUNC && s.Value != 0 {
					want[n] = s.Value
				}
			}
		}
		if len(want) != len(c.names) {
			t.Fatalf("%s: debug/elf finds %v", c.path, want)
		}
		for n, v := range want {
			if got[n].Value != v {
				t.Errorf("%s: %s at %#x, debug/elf says %#x", c.path, n, got[n].Value, v)
			}
		}
		f.Close()
	}
}

// buildGoWithSymbols builds a small Go program that uses crypto/tls, with
// its symbol table, and returns its path.
func buildGoWithSymbols(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	src := "package main\n\nimport (\n\t\"crypto/tls\"\n\t\"os\"\n)\n\n" +
		"func main() {\n\tc := tls.Client(nil, &tls.Config{})\n\tif len(os.Args) > 2 {\n\t\t_, _ = c.Write(nil)\n\t\t_, _ = c.Read(nil)\n\t}\n}\n"
	for name, content := range map[string]string{"go.mod": "module tlssymbols\n\ngo 1.22\n", "main.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	exe := filepath.Join(dir, "tlssymbols")
	cmd := exec.Command("go", "build", "-o", exe, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return exe
}

// goPclntab, which walks .gopclntab itself, finds the functions
// debug/gosym finds, in the test binary and a stripped copy of it.
func TestTLSPclntab(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	stripped := filepath.Join(t.TempDir(), "stripped")
	if out, err := exec.Command("objcopy", "--strip-all", exe, stripped).CombinedOutput(); err != nil {
		t.Fatalf("objcopy: %v\n%s", err, out)
	}
	for _, p := range []string{exe, stripped} {
		f, err := elf.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		data, err := f.Section(".gopclntab").Data()
		if err != nil {
			t.Fatal(err)
		}
		tab, err := gosym.NewTable(nil, gosym.NewLineTable(data, f.Section(".text").Addr))
		if err != nil {
			t.Fatal(err)
		}
		got := goPclntab(f)
		for _, n := range []string{goTLSWrite, goTLSRead} {
			fn := tab.LookupFunc(n)
			if fn == nil || got[n] != (goFunc{fn.Entry, fn.End}) {
				t.Errorf("%s: %s = %+v, debug/gosym says %+v", p, n, got[n], fn)
			}
		}
		f.Close()
	}
}

// tlsH2Requests are the requests of the HTTPS client over HTTP/2.
var tlsH2Requests = []struct {
	path   string
	status int
	n      int
}{{"/ok", 200, 3}, {"/missing", 404, 2}, {"/down", 503, 1}}

// TestTLSHTTP2Counted: a Go HTTPS server and client that negotiate HTTP/2
// (net/http's default, by ALPN): the frames of the plaintext are walked
// by the TLS uprobes with their cursor in h2_tls (bpf/h2.h), and every
// request is counted once on each side as HTTP/2, with tls=true spans.
func TestTLSHTTP2Counted(t *testing.T) { forEachHTTPHook(t, testTLSHTTP2Counted) }

func testTLSHTTP2Counted(t *testing.T, hook string) {
	env := startCollector(t, spansConfig(hook))
	requireHTTPHook(t, env, hook)
	if env.c.tls == nil {
		t.Fatal("the TLS programs did not load")
	}
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	const srvUnit, cliUnit = "vigil-ebpf-test-tls-h2-server.service", "vigil-ebpf-test-tls-h2-client.service"
	addr, srv := tlsServer(t, "", srvUnit, cert, key+",h2")
	env.covered(t, srv.Process.Pid)
	h2 := map[string]string{"reason": "h2"}
	before := env.value(t, "vigil_ebpf_tls_calls_dropped_total", h2)
	runTLSClient(t, "", cliUnit, addr+","+cert+",h2", func(pid int) { env.covered(t, pid) })

	var want []tlsCount
	total := 0
	for _, r := range tlsH2Requests {
		class := strconv.Itoa(r.status/100) + "xx"
		for _, c := range []struct{ kind, unit string }{{"client", cliUnit}, {"server", srvUnit}} {
			want = append(want, tlsCount{map[string]string{"kind": c.kind, "unit": c.unit, "method": "GET",
				"route": r.path, "status_class": class}, float64(r.n)})
		}
		total += r.n
	}
	env.exactCounts(t, "vigil_http_requests_total", want)
	for _, u := range []string{srvUnit, cliUnit} {
		if got := env.value(t, "vigil_http_requests_total", map[string]string{"unit": u}); got != float64(total) {
			t.Errorf("vigil_http_requests_total{unit=%q} sums to %v, want %v", u, got, total)
		}
	}
	if got := env.value(t, "vigil_ebpf_tls_calls_dropped_total", h2); got != before {
		t.Errorf("vigil_ebpf_tls_calls_dropped_total{reason=h2} grew by %v, want 0", got-before)
	}
	for _, r := range []string{"no_preface", "gap", "bad_frame", "hpack_error", "overflow"} {
		if v := env.value(t, "vigil_ebpf_h2_dropped_total", map[string]string{"reason": r}); v != 0 {
			t.Errorf("vigil_ebpf_h2_dropped_total{reason=%q} = %v, want 0", r, v)
		}
	}
	// Server spans say https and tls=true.
	var spans []ptrace.Span
	testenv.EventuallyTrue(t, 30*time.Second, "the HTTP/2 TLS server spans", func() bool {
		spans = env.findSpans(func(s ptrace.Span) bool {
			return s.Kind() == ptrace.SpanKindServer && strAttr(s, "server.port") == strings.Split(addr, ":")[1]
		})
		return len(spans) >= total
	})
	for _, s := range spans {
		if v, ok := s.Attributes().Get("tls"); !ok || !v.Bool() || strAttr(s, "url.scheme") != "https" ||
			strAttr(s, "network.protocol.version") != "2" {
			t.Errorf("server span %q: want tls=true, https, version 2: %v", s.Name(), s.Attributes().AsRaw())
		}
	}
}

// grpcTLSServer is the gRPC server helper over TLS: arg is "cert,key"
// (grpc-go's credentials); it prints its address.
func grpcTLSServer(arg string) error {
	cert, key, _ := strings.Cut(arg, ",")
	creds, err := credentials.NewServerTLSFromFile(cert, key)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	newGRPCServer(ln, grpc.Creds(creds))
	select {}
}

// grpcTLSClient makes TestTLSGRPC's calls over TLS to the server of arg
// ("addr,cert"), on one connection: 3 health checks, 2 UNAVAILABLE, 1
// UNIMPLEMENTED.
func grpcTLSClient(arg string) error {
	addr, cert, _ := strings.Cut(arg, ",")
	creds, err := credentials.NewClientTLSFromFile(cert, "localhost")
	if err != nil {
		return err
	}
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	defer cc.Close()
	hc := healthpb.NewHealthClient(cc)
	for range 3 {
		if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
			return fmt.Errorf("health check: %w", err)
		}
	}
	call := func(method string, want codes.Code) error {
		err := cc.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
		if status.Code(err) != want {
			return fmt.Errorf("%s: %v, want %v", method, err, want)
		}
		return nil
	}
	for range 2 {
		if err := call("/test.Flaky/Call", codes.Unavailable); err != nil {
			return err
		}
	}
	return call("/test.Missing/Do", codes.Unimplemented)
}

// TestTLSGRPC: a grpc-go server and client over TLS (grpc-go's
// credentials, a certificate made here), each in its own cgroup: every
// call is counted exactly on both sides from the TLS plaintext, with
// tls=true spans.
func TestTLSGRPC(t *testing.T) { forEachHTTPHook(t, testTLSGRPC) }

func testTLSGRPC(t *testing.T, hook string) {
	env := startCollector(t, spansConfig(hook))
	requireHTTPHook(t, env, hook)
	if env.c.tls == nil {
		t.Fatal("the TLS programs did not load")
	}
	dir := t.TempDir()
	cert, key := writeTestCert(t, dir)
	const srvUnit, cliUnit = "vigil-ebpf-test-tls-grpc-server.service", "vigil-ebpf-test-tls-grpc-client.service"
	srvCg := testCgroup(t, srvUnit)
	cmd := helperCmd(t, srvCg, "grpc-tls-server", cert+","+key)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("grpc tls server: %v", err)
	}
	addr := strings.TrimSpace(line)
	env.covered(t, cmd.Process.Pid)

	cliCg := testCgroup(t, cliUnit)
	cli := helperCmd(t, cliCg, "grpc-tls-client", addr+","+cert)
	stdin, err := cli.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var cliOut strings.Builder
	cli.Stdout, cli.Stderr = &cliOut, &cliOut
	if err := cli.Start(); err != nil {
		t.Fatal(err)
	}
	env.covered(t, cli.Process.Pid)
	_, _ = stdin.Write([]byte("go\n"))
	stdin.Close()
	if err := cli.Wait(); err != nil {
		t.Fatalf("grpc tls client: %v\n%s", err, cliOut.String())
	}

	var want []tlsCount
	for _, kind := range []string{"client", "server"} {
		unit := cliUnit
		if kind == "server" {
			unit = srvUnit
		}
		for _, c := range []struct {
			service, method, code string
			n                     float64
		}{
			{"grpc.health.v1.Health", "Check", "OK", 3},
			{"test.Flaky", "Call", "UNAVAILABLE", 2},
			{"test.Missing", "Do", "UNIMPLEMENTED", 1},
		} {
			want = append(want, tlsCount{map[string]string{"kind": kind, "unit": unit, "service": c.service,
				"method": c.method, "code": c.code}, c.n})
		}
	}
	env.exactCounts(t, "vigil_grpc_requests_total", want)
	for _, u := range []string{srvUnit, cliUnit} {
		if got := env.value(t, "vigil_grpc_requests_total", map[string]string{"unit": u}); got != 6 {
			t.Errorf("vigil_grpc_requests_total{unit=%q} = %v, want 6", u, got)
		}
		if got := env.value(t, "vigil_http_requests_total", map[string]string{"unit": u}); got != 0 {
			t.Errorf("vigil_http_requests_total{unit=%q} = %v, want 0 (gRPC calls are not HTTP requests)", u, got)
		}
	}
	// The failed calls' spans (UNAVAILABLE is an error on both sides),
	// with tls=true.
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	var flaky []ptrace.Span
	testenv.EventuallyTrue(t, 10*time.Second, "4 test.Flaky/Call spans", func() bool {
		flaky = env.findSpans(func(sp ptrace.Span) bool {
			return sp.Name() == "test.Flaky/Call" && strAttr(sp, "server.port") == port
		})
		return len(flaky) >= 4
	})
	if len(flaky) != 4 {
		t.Errorf("%d test.Flaky/Call spans, want 4 (2 calls, client and server)", len(flaky))
	}
	for _, sp := range flaky {
		if v, ok := sp.Attributes().Get("tls"); !ok || !v.Bool() || strAttr(sp, "rpc.grpc.status_code") != "14" {
			t.Errorf("span %s (%s): want tls=true and status 14: %v", sp.Name(), sp.Kind(), sp.Attributes().AsRaw())
		}
	}
}

// tlsCount is a series and the count it must reach.
type tlsCount struct {
	labels map[string]string
	want   float64
}

// exactCounts waits (up to 30 s) until every series of metric reaches its
// count, then checks that none went past it; on failure it logs every
// series and what the TLS programs dropped, so that a run in CI says
// which side or call was missed.
func (e *testEnv) exactCounts(t *testing.T, metric string, want []tlsCount) {
	t.Helper()
	reached := func() bool {
		for _, c := range want {
			if e.value(t, metric, c.labels) < c.want {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(30 * time.Second); !reached() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // anything counted twice would show now
	failed := false
	for _, c := range want {
		if got := e.value(t, metric, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", metric, c.labels, got, c.want)
			failed = true
		}
	}
	if failed {
		for _, r := range tlsCountNames {
			t.Logf("vigil_ebpf_tls_calls_dropped_total{reason=%q} = %v", r, e.value(t, "vigil_ebpf_tls_calls_dropped_total", map[string]string{"reason": r}))
		}
		for _, r := range []string{"malformed", "unexpected", "attaching"} {
			t.Logf("vigil_ebpf_protocol_rejected_total{reason=%q} = %v", r, e.value(t, "vigil_ebpf_protocol_rejected_total", map[string]string{"reason": r}))
		}
		t.Logf("vigil_ebpf_tls_processes{library=openssl} = %v, events lost %v", e.value(t, "vigil_ebpf_tls_processes", map[string]string{"library": "openssl"}),
			e.value(t, "vigil_ebpf_events_lost_total", nil))
	}
}

// BenchmarkTLSAttachDetach attaches the TLS uprobes to one Go executable
// (the test binary: 9 probes) and detaches them, per iteration, with
// uprobe_multi links and with one perf-event link per probe, side by
// side: what the agent pays per file at its stop and when a file's last
// process exits (closeLinks, 32 at a time).
func BenchmarkTLSAttachDetach(b *testing.B) {
	testenv.RequireRoot(b, "loading eBPF programs (CAP_BPF, CAP_PERFMON)")
	exe, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	k, err := statKey(exe)
	if err != nil {
		b.Fatal(err)
	}
	for _, multi := range []bool{true, false} {
		name := "per_probe"
		if multi {
			name = "uprobe_multi"
		}
		b.Run(name, func(b *testing.B) {
			cfg := NewConfig()
			log := slog.New(slog.DiscardHandler)
			caps := discover(cfg, log)
			if !multi {
				caps.features["uprobe_multi"] = errors.New("uprobe_multi links not supported (pretended by the benchmark)")
			} else if err := caps.features["uprobe_multi"]; err != nil {
				b.Skip(err)
			}
			o, err := load(loadOptions{cfg: cfg, cgroupHierarchy: -1}, caps, log)
			if err != nil {
				b.Fatal(err)
			}
			defer o.close()
			tm := newTLSManagerFor(o, "/proc", "/", cfg.MaxTLSTargets, log)
			if tm == nil {
				b.Fatal("the TLS programs did not load")
			}
			// The file is inspected once, outside the timing.
			tm.mu.Lock()
			if v := tm.verdict(k, exe); len(v.probes) == 0 {
				tm.mu.Unlock()
				b.Fatalf("the test binary has no TLS probes: %+v", v)
			}
			tm.mu.Unlock()
			links, n := 0, 0
			var attach, detach time.Duration
			for b.Loop() {
				tm.mu.Lock()
				start := time.Now()
				a := tm.attach(k, exe)
				if a == nil {
					tm.mu.Unlock()
					b.Fatal("the test binary was not attached")
				}
				attached := time.Now()
				links = len(a.links)
				closeLinks(a.links)
				detach += time.Since(attached)
				attach += attached.Sub(start)
				n++
				delete(tm.attached, k)
				tm.mu.Unlock()
			}
			b.ReportMetric(float64(links), "links/op")
			b.ReportMetric(float64(attach.Microseconds())/float64(n), "attach-µs/op")
			b.ReportMetric(float64(detach.Microseconds())/float64(n), "detach-µs/op")
		})
	}
}
