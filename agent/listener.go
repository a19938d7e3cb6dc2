package agent

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// connLimiter bounds the open connections of the HTTP listener. At the
// bound, a new connection closes the connection that has been idle longest
// (a keep-alive connection between requests), as nginx reuses keep-alive
// connections when it runs out; when none is idle it waits for one to close
// or go idle. Idle connections therefore cannot starve /-/healthy or the
// scraper, and the process never holds more than max sockets for HTTP.
// netutil.LimitListener only waits, so a client holding max idle
// connections would block everyone else until the idle timeout.
type connLimiter struct {
	net.Listener
	slots chan struct{} // one token per open connection
	wake  chan struct{} // a connection went idle
	done  chan struct{}
	once  sync.Once

	mu   sync.Mutex
	idle map[*limitedConn]time.Time // idle connections and since when

	open    prometheus.GaugeFunc
	limit   prometheus.Gauge
	evicted prometheus.Counter
	waited  prometheus.Counter
}

func newConnLimiter(l net.Listener, max int, reg prometheus.Registerer) *connLimiter {
	cl := &connLimiter{
		Listener: l,
		slots:    make(chan struct{}, max),
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
		idle:     map[*limitedConn]time.Time{},
		limit: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_http_connections_max",
			Help: "The bound on open HTTP connections (server.max_connections).",
		}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_http_idle_connections_closed_total",
			Help: "Idle keep-alive connections closed to make room for a new connection at server.max_connections.",
		}),
		waited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_http_connection_waits_total",
			Help: "New connections that waited for a slot because server.max_connections connections were busy.",
		}),
	}
	cl.open = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vigil_http_connections",
		Help: "Open HTTP connections on the agent's listener.",
	}, func() float64 { return float64(len(cl.slots)) })
	cl.limit.Set(float64(max))
	reg.MustRegister(cl.open, cl.limit, cl.evicted, cl.waited)
	return cl
}

// Accept accepts a connection, then takes a slot for it: a free one, else
// the slot of the longest-idle connection, else the first to free up.
func (cl *connLimiter) Accept() (net.Conn, error) {
	c, err := cl.Listener.Accept()
	if err != nil {
		return nil, err
	}
	counted := false
	for {
		select {
		case cl.slots <- struct{}{}:
			return &limitedConn{Conn: c, cl: cl}, nil
		default:
		}
		if cl.evictIdle() {
			continue
		}
		if !counted {
			cl.waited.Inc()
			counted = true
		}
		select {
		case cl.slots <- struct{}{}:
			return &limitedConn{Conn: c, cl: cl}, nil
		case <-cl.wake:
		case <-cl.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
}

// Close stops Accept and closes the listener.
func (cl *connLimiter) Close() error {
	cl.once.Do(func() { close(cl.done) })
	return cl.Listener.Close()
}

// evictIdle closes the longest-idle connection; false when none is idle.
func (cl *connLimiter) evictIdle() bool {
	cl.mu.Lock()
	var oldest *limitedConn
	var since time.Time
	for c, t := range cl.idle {
		if oldest == nil || t.Before(since) {
			oldest, since = c, t
		}
	}
	if oldest != nil {
		delete(cl.idle, oldest)
	}
	cl.mu.Unlock()
	if oldest == nil {
		return false
	}
	cl.evicted.Inc()
	oldest.Close() // frees its slot before returning
	return true
}

// connState is the http.Server's ConnState hook: it tracks which
// connections are idle between requests.
func (cl *connLimiter) connState(c net.Conn, st http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	cl.mu.Lock()
	if st == http.StateIdle {
		cl.idle[lc] = time.Now()
	} else {
		delete(cl.idle, lc)
	}
	cl.mu.Unlock()
	if st == http.StateIdle {
		select {
		case cl.wake <- struct{}{}:
		default:
		}
	}
}

// limitedConn gives its slot back when it closes.
type limitedConn struct {
	net.Conn
	cl   *connLimiter
	once sync.Once
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.cl.mu.Lock()
		delete(c.cl.idle, c)
		c.cl.mu.Unlock()
		<-c.cl.slots
		select {
		case c.cl.wake <- struct{}{}:
		default:
		}
	})
	return err
}
