package healing

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	sdbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"
)

// systemdDialer returns how the systemd actuators reach systemd: the
// D-Bus address given (a bus, or systemd's private socket such as
// unix:path=/run/systemd/private), or by default systemd's private socket
// and then the system bus.
func systemdDialer(address string, direct bool) func(ctx context.Context) (*sdbus.Conn, error) {
	if address == "" {
		return func(ctx context.Context) (*sdbus.Conn, error) { return sdbus.NewWithContext(ctx) }
	}
	return func(ctx context.Context) (*sdbus.Conn, error) {
		return sdbus.NewConnection(func() (*godbus.Conn, error) {
			c, err := godbus.Dial(address, godbus.WithContext(ctx))
			if err != nil {
				return nil, err
			}
			// EXTERNAL with the numeric uid, as systemd's own clients do.
			if err := c.Auth([]godbus.Auth{godbus.AuthExternal(strconv.Itoa(os.Getuid()))}); err != nil {
				c.Close()
				return nil, err
			}
			// systemd's private socket is peer-to-peer: there is no bus
			// daemon to say Hello to.
			if !direct && !strings.HasSuffix(address, "/systemd/private") {
				if err := c.Hello(); err != nil {
					c.Close()
					return nil, err
				}
			}
			return c, nil
		})
	}
}

// systemdJob connects, runs one job-queuing call and waits for the job to
// finish within timeout: "done" is success; "failed", "timeout",
// "canceled", "dependency" or "skipped" is a failed action.
func systemdJob(ctx context.Context, env *Env, timeout time.Duration, what string,
	call func(ctx context.Context, c *sdbus.Conn, ch chan<- string) (int, error)) error {
	if env.Systemd == nil {
		return fmt.Errorf("systemd is not available on this agent")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := env.Systemd(ctx)
	if err != nil {
		return fmt.Errorf("connect to systemd: %w", err)
	}
	defer c.Close()
	ch := make(chan string, 1)
	if _, err := call(ctx, c, ch); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s: job %s", what, res)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: job did not finish within %s", what, timeout)
	}
}

var (
	paramUnit    = Param{Name: "unit", Required: true, Check: checkUnit, Doc: "unit name, e.g. app.service"}
	paramTimeout = Param{Name: "timeout", Default: "60s", Check: checkDuration, Doc: "how long to wait for the job"}
	paramMode    = Param{Name: "mode", Default: "replace", Check: checkOneOf("replace", "fail", "isolate", "ignore-dependencies", "ignore-requirements"), Doc: "job mode"}
)

func checkUnit(s string) error {
	if err := checkNotEmpty(s); err != nil {
		return err
	}
	for _, r := range s {
		if r == '/' || r <= ' ' {
			return fmt.Errorf("not a unit name: %q", s)
		}
	}
	return nil
}
