package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"time"
)

// Redis is a Redis server (Debian's redis-server, 7.0) started by
// [StartRedis]: no persistence, no password, loopback only.
type Redis struct {
	// Addr is the server's address, 127.0.0.1:<port>.
	Addr string
	// Port is its port.
	Port int
	// TLSPort is its TLS port with [RedisTLS] (on 127.0.0.1), else 0.
	TLSPort int
	// Process is the redis-server process.
	*Process
}

// StartRedis starts redis-server on a free 127.0.0.1 port with its working
// directory in the test's temp folder (not the system service), and waits
// until it answers PING.
func StartRedis(t TB, opts ...RedisOption) *Redis {
	t.Helper()
	var o redisOptions
	for _, f := range opts {
		f(&o)
	}
	bin := Binary(t, "redis-server")
	r := &Redis{}
	n := 1
	if o.cert != "" {
		n = 2
	}
	r.Process = StartOnFreePorts(t, n, func(ports []int) Command {
		r.Port = ports[0]
		r.Addr = hostPort(ports[0])
		// Options as command-line arguments: no configuration file.
		args := []string{"--port", fmt.Sprint(ports[0]), "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", "--logfile", ""}
		if o.cert != "" {
			r.TLSPort = ports[1]
			args = append(args, "--tls-port", fmt.Sprint(ports[1]), "--tls-cert-file", o.cert, "--tls-key-file", o.key,
				"--tls-ca-cert-file", o.cert, "--tls-auth-clients", "no")
		}
		return Command{Name: "redis", Path: bin, Args: args, Ready: redisReady(r.Addr)}
	})
	return r
}

// RedisOption changes how [StartRedis] starts the server.
type RedisOption func(*redisOptions)

type redisOptions struct{ cert, key string }

// RedisTLS adds a TLS port ([Redis.TLSPort]) with the PEM certificate and
// key files given (no client certificates asked); the plain port stays.
func RedisTLS(certFile, keyFile string) RedisOption {
	return func(o *redisOptions) { o.cert, o.key = certFile, keyFile }
}

// redisReady returns a readiness check that passes when the server at
// addr answers PING with +PONG (a server still loading answers -LOADING).
func redisReady(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("*1\r\n$4\r\nPING\r\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if line != "+PONG\r\n" {
			return fmt.Errorf("%w: PING answered %q", errNotYet, line)
		}
		return nil
	}
}
