package testenv

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"
)

// DNSZone is the zone the server started by [StartDNS] is authoritative
// for. Its names: www (A 192.0.2.10, AAAA 2001:db8::10), mail (A
// 192.0.2.25), ns (A 127.0.0.1); the apex has SOA, NS, MX (10 mail) and a
// TXT record. Any other name in the zone is NXDOMAIN; a name outside it
// is REFUSED (the server is not a resolver).
const DNSZone = "vigil.test."

// DNSPort53Addr is the address on which a server started with
// DNSOptions.Port53 also answers on port 53 (what glibc's resolv.conf can
// name: it has no port).
const DNSPort53Addr = "127.0.53.53"

// DNS is an authoritative DNS server (Debian's NSD 4) started by
// [StartDNS], answering over UDP and TCP on loopback.
type DNS struct {
	// Addr is the server's address, 127.0.0.1:<port>.
	Addr string
	// Port is its port.
	Port int
	// Process is the nsd process (which forks its server processes).
	*Process
}

// DNSOptions are [StartDNSWith]'s options.
type DNSOptions struct {
	// Port53 makes the server also listen on DNSPort53Addr port 53
	// (needs root).
	Port53 bool
}

// StartDNS starts nsd on a free 127.0.0.1 port (UDP and TCP) with the
// zone [DNSZone], its files in the test's temp folder (not the system
// service), and waits until it answers a query for the zone's SOA.
func StartDNS(t TB) *DNS { return StartDNSWith(t, DNSOptions{}) }

// StartDNSWith is [StartDNS] with options.
func StartDNSWith(t TB, o DNSOptions) *DNS {
	t.Helper()
	bin := Binary(t, "nsd")
	dir := t.TempDir()
	zone := writeFile(t, dir, "vigil.test.zone", `$ORIGIN vigil.test.
$TTL 60
@    IN SOA  ns.vigil.test. admin.vigil.test. 1 3600 600 86400 60
@    IN NS   ns
@    IN MX   10 mail
@    IN TXT  "vigil test zone"
ns   IN A    127.0.0.1
www  IN A    192.0.2.10
www  IN AAAA 2001:db8::10
mail IN A    192.0.2.25
`)
	d := &DNS{}
	d.Process = StartOnFreePorts(t, 1, func(ports []int) Command {
		d.Port = ports[0]
		d.Addr = hostPort(ports[0])
		listen := fmt.Sprintf("  ip-address: 127.0.0.1@%d\n", ports[0])
		if o.Port53 {
			listen += "  ip-address: " + DNSPort53Addr + "@53\n"
		}
		conf := writeFile(t, dir, "nsd.conf", `server:
`+listen+`  username: ""
  chroot: ""
  zonesdir: "`+dir+`"
  database: ""
  zonelistfile: "`+filepath.Join(dir, "zone.list")+`"
  xfrdfile: "`+filepath.Join(dir, "xfrd.state")+`"
  pidfile: "`+filepath.Join(dir, "nsd.pid")+`"
  server-count: 1
  do-ip6: no
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: vigil.test
  zonefile: "`+zone+`"
`)
		return Command{
			Name:  "nsd",
			Path:  bin,
			Args:  []string{"-d", "-c", conf},
			Ready: dnsReady(d.Addr),
		}
	})
	return d
}

// dnsReady returns a readiness check that passes when the server at addr
// answers the zone's SOA query with NOERROR over UDP.
func dnsReady(addr string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		var d net.Dialer
		c, err := d.DialContext(ctx, "udp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		q, err := (&dnsmessage.Message{Header: dnsmessage.Header{ID: 1},
			Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(DNSZone), Type: dnsmessage.TypeSOA, Class: dnsmessage.ClassINET}}}).Pack()
		if err != nil {
			return err
		}
		if _, err := c.Write(q); err != nil {
			return err
		}
		b := make([]byte, 1500)
		n, err := c.Read(b)
		if err != nil {
			if strings.Contains(err.Error(), "refused") || strings.Contains(err.Error(), "timeout") {
				return fmt.Errorf("%w: %v", errNotYet, err)
			}
			return err
		}
		var p dnsmessage.Parser
		h, err := p.Start(b[:n])
		if err != nil {
			return err
		}
		if h.RCode != dnsmessage.RCodeSuccess {
			return fmt.Errorf("%w: SOA query answered %v", errNotYet, h.RCode)
		}
		return nil
	}
}
