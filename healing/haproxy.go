package healing

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// haproxyCommand sends one command to HAProxy's runtime API (a unix
// socket path, or host:port for a TCP stats socket) and returns its
// output. The API answers success with empty output.
func haproxyCommand(ctx context.Context, address, cmd string) (string, error) {
	network := "tcp"
	if strings.HasPrefix(address, "/") || strings.HasPrefix(address, "@") {
		network = "unix"
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, network, address)
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API %s: %w", address, err)
	}
	defer conn.Close()
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", fmt.Errorf("haproxy runtime API %s: %w", address, err)
	}
	out, err := io.ReadAll(io.LimitReader(conn, 1<<20))
	if err != nil {
		return "", fmt.Errorf("haproxy runtime API %s: %w", address, err)
	}
	return strings.TrimSpace(string(out)), nil
}

func checkHAProxyName(s string) error {
	if err := checkNotEmpty(s); err != nil {
		return err
	}
	if strings.ContainsAny(s, " \t\r\n;/") {
		return fmt.Errorf("not a backend or server name: %q", s)
	}
	return nil
}

var haproxyParams = []Param{
	{Name: "socket", Required: true, Fixed: true, Check: checkNotEmpty, Doc: "runtime API: a unix socket path or host:port"},
	{Name: "backend", Required: true, Check: checkHAProxyName, Doc: "backend name"},
	{Name: "server", Required: true, Check: checkHAProxyName, Doc: "server name"},
}

func haproxyTarget(a Args) Target {
	return Target{Kind: "HAProxyServer", Namespace: a.Str("socket"), Name: a.Str("backend") + "/" + a.Str("server")}
}
