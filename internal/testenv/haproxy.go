package testenv

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// HAProxy is an HAProxy (Debian's, 2.6) started by [StartHAProxy] with an
// admin-level runtime API socket.
type HAProxy struct {
	// URL is the HTTP frontend's URL, http://127.0.0.1:<port>.
	URL string
	// Backend is the name of the backend holding the servers ("be"); the
	// servers are named s0, s1, … in the order given.
	Backend string
	// Servers are the server names, in order.
	Servers []string
	// AdminSocket is the path of the runtime API socket (level admin).
	AdminSocket string
	// Config is the haproxy.cfg content; ConfigFile its path.
	Config, ConfigFile string
	// Process is the haproxy process.
	*Process
}

// StartHAProxy starts HAProxy in HTTP mode with one frontend on a free port
// and one backend "be" whose servers s0, s1, … point at backends (host:port
// addresses, without health checks), and waits until the frontend and the
// runtime API socket accept connections.
func StartHAProxy(t TB, backends ...string) *HAProxy {
	t.Helper()
	bin := Binary(t, "haproxy")
	dir := t.TempDir()
	port := FreePort(t)
	h := &HAProxy{
		URL:         "http://" + hostPort(port),
		Backend:     "be",
		AdminSocket: filepath.Join(dir, "admin.sock"),
	}
	var b strings.Builder
	fmt.Fprintf(&b, `global
    stats socket %s mode 600 level admin
    stats timeout 30s

defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s

frontend fe
    bind %s
    default_backend %s

backend %s
`, h.AdminSocket, hostPort(port), h.Backend, h.Backend)
	for i, addr := range backends {
		name := "s" + strconv.Itoa(i)
		h.Servers = append(h.Servers, name)
		fmt.Fprintf(&b, "    server %s %s\n", name, addr)
	}
	h.Config = b.String()
	h.ConfigFile = writeFile(t, dir, "haproxy.cfg", h.Config)
	sockReady, feReady := SocketReady(h.AdminSocket), TCPReady(hostPort(port))
	h.Process = StartProcess(t, Command{
		Name: "haproxy",
		Path: bin,
		Args: []string{"-db", "-f", h.ConfigFile},
		Ready: func(ctx context.Context) error {
			if err := sockReady(ctx); err != nil {
				return err
			}
			return feReady(ctx)
		},
	})
	return h
}

// Command sends one command to the runtime API (for example "set server
// be/s0 state drain") and returns its output. Many commands answer with
// empty output on success.
func (h *HAProxy) Command(cmd string) (string, error) {
	conn, err := net.DialTimeout("unix", h.AdminSocket, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", err
	}
	out, err := io.ReadAll(conn)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(out), "\n"), nil
}

// ServerStatus returns the status column of `show stat` for backend/server:
// "UP", "DOWN", "DRAIN", "MAINT", "no check", …
func (h *HAProxy) ServerStatus(backend, server string) (string, error) {
	out, err := h.Command("show stat")
	if err != nil {
		return "", err
	}
	r := csv.NewReader(strings.NewReader(strings.TrimPrefix(out, "# ")))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return "", fmt.Errorf("show stat: %w", err)
	}
	if len(rows) == 0 {
		return "", fmt.Errorf("show stat: empty output")
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for _, row := range rows[1:] {
		if len(row) > col["status"] && row[col["pxname"]] == backend && row[col["svname"]] == server {
			return row[col["status"]], nil
		}
	}
	return "", fmt.Errorf("show stat: no server %s/%s", backend, server)
}
