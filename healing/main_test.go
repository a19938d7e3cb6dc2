package healing

import (
	"io"
	"net"
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Re-executed inside a test systemd's namespaces (see startSystemd):
	// relay a unix socket to systemd's private socket, whose peer must be
	// in systemd's PID namespace.
	if spec := os.Getenv("VIGIL_TEST_UNIX_PROXY"); spec != "" {
		listen, target, _ := strings.Cut(spec, "=")
		unixProxy(listen, target)
		os.Exit(0)
	}
	goleak.VerifyTestMain(m,
		// client-go's process-wide workers (started on first use).
		goleak.IgnoreTopFunction("k8s.io/apimachinery/pkg/util/wait.BackoffUntil"),
		goleak.IgnoreTopFunction("k8s.io/klog/v2.(*flushDaemon).run.func1"),
		goleak.IgnoreAnyFunction("k8s.io/client-go/util/workqueue.(*Type).updateUnfinishedWorkLoop"),
	)
}

func unixProxy(listen, target string) {
	l, err := net.Listen("unix", listen)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			os.Exit(1)
		}
		go func() {
			defer c.Close()
			u, err := net.Dial("unix", target)
			if err != nil {
				return
			}
			defer u.Close()
			go func() { io.Copy(u, c); u.(*net.UnixConn).CloseWrite() }()
			io.Copy(c, u)
		}()
	}
}
