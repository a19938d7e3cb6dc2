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
	// Process is the redis-server process.
	*Process
}

// StartRedis starts redis-server on a free 127.0.0.1 port with its working
// directory in the test's temp folder (not the system service), and waits
// until it answers PING.
func StartRedis(t TB) *Redis {
	t.Helper()
	bin := Binary(t, "redis-server")
	r := &Redis{}
	r.Process = StartOnFreePorts(t, 1, func(ports []int) Command {
		r.Port = ports[0]
		r.Addr = hostPort(ports[0])
		return Command{
			Name: "redis",
			Path: bin,
			// Options as command-line arguments: no configuration file.
			Args: []string{"--port", fmt.Sprint(ports[0]), "--bind", "127.0.0.1", "--save", "",
				"--appendonly", "no", "--protected-mode", "no", "--daemonize", "no", "--logfile", ""},
			Ready: redisReady(r.Addr),
		}
	})
	return r
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
