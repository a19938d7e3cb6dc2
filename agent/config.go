package agent

import (
	_ "embed"
	"errors"
	"fmt"
	"net"
	"os"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-agent/vigil/component"
	"github.com/vigil-agent/vigil/internal/confyaml"
)

// DefaultListenAddress is the agent's default HTTP address. 19100 is not
// taken on Prometheus's default port allocation page (the 9100–9999 exporter
// range there is fully allocated) and is easy to remember beside
// node_exporter's 9100.
const DefaultListenAddress = ":19100"

// DefaultConfigYAML is the embedded configuration that `vigil run` uses
// without --config: every default collector on, no backend, remediation in
// dry-run.
//
//go:embed default.yaml
var DefaultConfigYAML []byte

// Config is Vigil's whole configuration file.
type Config struct {
	Global     GlobalConfig     `yaml:"global"`
	Server     ServerConfig     `yaml:"server"`
	Log        LogConfig        `yaml:"log"`
	Collectors CollectorsConfig `yaml:"collectors"`
	// Sections holds the registered components' sections (rules, healing,
	// exporters, …) by top-level key; every registered section has an entry.
	Sections map[string]component.Config `yaml:"-"`

	// File is the path the configuration was read from, or "" for the
	// embedded default.
	File string `yaml:"-"`

	// digests are what the enabled parts' Check returned, by
	// "collectors.<name>" or section name: a reload compares them, so a
	// rule or policy file whose content changed is applied.
	digests map[string]string
}

// GlobalConfig holds settings shared by every component.
type GlobalConfig struct {
	// NodeName names this node; it defaults to $NODE_NAME, then the hostname.
	NodeName string `yaml:"node_name"`
	// ProcFS, SysFS and RootFS locate the host's filesystems (for example
	// /host/proc inside a container).
	ProcFS string `yaml:"procfs"`
	SysFS  string `yaml:"sysfs"`
	RootFS string `yaml:"rootfs"`
	// CollectorTimeout bounds one collector's Update in one scrape.
	CollectorTimeout time.Duration `yaml:"collector_timeout"`
	// KeepCapabilities names the capabilities vigil run keeps once it has
	// started ("bpf", "cap_bpf" or "CAP_BPF"); the others are dropped from
	// every set. Empty means the run-time set of docs/security.md (bpf,
	// perfmon, dac_read_search; sys_admin on kernels before 5.8); [all]
	// drops nothing. Read at start only.
	KeepCapabilities []string `yaml:"keep_capabilities"`
	// MemoryLimit is the Go runtime's soft memory limit under vigil run:
	// auto (80% of the agent's cgroup memory limit, none without one), off,
	// or a size ("48MiB", at least 16MiB). GOMEMLIMIT in the environment
	// wins. Applied at start and at each reload.
	MemoryLimit string `yaml:"memory_limit"`
}

// ServerConfig configures the HTTP server.
type ServerConfig struct {
	// ListenAddress is host:port; --web.listen-address overrides it.
	ListenAddress string `yaml:"listen_address"`
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration `yaml:"read_header_timeout"`
	// MaxRequests bounds concurrent /metrics requests; 0 means no bound.
	MaxRequests int `yaml:"max_requests"`
	// ReadTimeout bounds reading a whole request, body included; it does
	// not end event streams, whose request is read at once.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout closes a keep-alive connection idle for this long.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConnections bounds open connections. At the bound a new
	// connection closes the longest-idle keep-alive connection, or waits
	// for one to close when none is idle.
	MaxConnections int `yaml:"max_connections"`
	// MaxEventStreams bounds concurrent event streams (GET /api/v1/actions
	// with Accept: text/event-stream); more are answered 503.
	MaxEventStreams int `yaml:"max_event_streams"`
	// WebConfigFile is an exporter-toolkit web configuration file (TLS,
	// client certificates, basic auth, as Prometheus exporters read it);
	// --web.config.file overrides it. Empty means plain HTTP.
	WebConfigFile string `yaml:"web_config_file"`
	// EnableLifecycle serves POST /-/reload, behind the API token
	// (healing.auth_token_file); --web.enable-lifecycle turns it on too.
	// Off, /-/reload answers 404.
	EnableLifecycle bool `yaml:"enable_lifecycle"`
	// RequireAPIToken makes every /api/v1/* read endpoint require the API
	// token (healing.auth_token_file). Off, a token is still accepted and
	// a wrong one refused.
	RequireAPIToken bool `yaml:"require_api_token"`
}

// LogConfig configures the agent's own log.
type LogConfig struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
	// Format is json, text or auto (text on a terminal, JSON otherwise).
	Format string `yaml:"format"`
}

// CollectorConfig is one collector's section: whether it runs, and its own
// settings.
type CollectorConfig struct {
	Enabled bool
	Config  component.Config
}

// CollectorsConfig maps collector names to their sections. Every registered
// collector has an entry after loading.
type CollectorsConfig map[string]*CollectorConfig

// defaultConfig returns a Config with every default filled in.
func defaultConfig() *Config {
	c := &Config{
		Global: GlobalConfig{
			ProcFS:           "/proc",
			SysFS:            "/sys",
			RootFS:           "/",
			CollectorTimeout: 10 * time.Second,
			MemoryLimit:      MemoryLimitAuto,
		},
		Server: ServerConfig{
			ListenAddress:     DefaultListenAddress,
			ReadHeaderTimeout: 10 * time.Second,
			MaxRequests:       40,
			ReadTimeout:       30 * time.Second,
			IdleTimeout:       time.Minute,
			MaxConnections:    256,
			MaxEventStreams:   16,
		},
		Log:        LogConfig{Level: "info", Format: "auto"},
		Collectors: CollectorsConfig{},
		Sections:   map[string]component.Config{},
	}
	for _, f := range component.Factories(component.KindCollector) {
		c.Collectors[f.Name] = &CollectorConfig{Enabled: f.DefaultEnabled, Config: f.NewConfig()}
	}
	for _, f := range component.Factories(component.KindSection) {
		c.Sections[f.Name] = f.NewConfig()
	}
	return c
}

// LoadFile reads, parses and validates a configuration file. Nothing is
// applied: the caller swaps configurations only when this succeeds.
func LoadFile(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Load(path, data)
	if err != nil {
		return nil, err
	}
	c.File = path
	return c, nil
}

// LoadDefault returns the embedded default configuration.
func LoadDefault() (*Config, error) {
	return Load("<embedded default>", DefaultConfigYAML)
}

// Load parses and validates configuration data; file names it in errors.
func Load(file string, data []byte) (*Config, error) {
	c := defaultConfig()
	root, err := confyaml.Parse(file, data)
	if err != nil {
		return nil, err
	}
	if root != nil {
		if err := c.decode(file, root); err != nil {
			return nil, confyaml.Limit(err, confyaml.MaxErrors)
		}
	}
	// The problems are capped (config check, the reload log and the
	// /-/reload reply all print this error).
	if err := c.Validate(); err != nil {
		return nil, &confyaml.Error{File: file, Msg: "invalid configuration:\n" + indent(confyaml.Limit(err, confyaml.MaxErrors).Error())}
	}
	if err := c.check(); err != nil {
		return nil, &confyaml.Error{File: file, Msg: "invalid configuration:\n" + indent(confyaml.Limit(err, confyaml.MaxErrors).Error())}
	}
	return c, nil
}

// check runs component.Checker on every enabled collector and section:
// the files they name are read once here, after Validate, so that `vigil
// config check` and a reload refuse a broken file before anything is
// applied. It records their digests.
func (c *Config) check() error {
	c.digests = map[string]string{}
	var errs []error
	run := func(path string, cfg component.Config) {
		ch, ok := cfg.(component.Checker)
		if !ok {
			return
		}
		d, err := ch.Check()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
			return
		}
		c.digests[path] = d
	}
	for _, name := range c.Collectors.names() {
		if sec := c.Collectors[name]; sec.Enabled {
			run("collectors."+name, sec.Config)
		}
	}
	for _, f := range component.Factories(component.KindSection) {
		if sec, ok := c.Sections[f.Name]; ok && f.Enabled(sec) {
			run(f.Name, sec)
		}
	}
	return errors.Join(errs...)
}

// decode fills c from the document's top-level mapping: the agent's own
// sections, then each registered component's section.
func (c *Config) decode(file string, root *yaml.Node) error {
	if root.Kind != yaml.MappingNode {
		return &confyaml.Error{File: file, Line: root.Line, Column: root.Column, Msg: "the configuration must be a YAML mapping"}
	}
	var errs []error
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		var err error
		switch k.Value {
		case "global":
			err = confyaml.Decode(file, k.Value, v, &c.Global)
		case "server":
			err = confyaml.Decode(file, k.Value, v, &c.Server)
		case "log":
			err = confyaml.Decode(file, k.Value, v, &c.Log)
		case "collectors":
			err = c.Collectors.decode(file, v)
		default:
			sec, ok := c.Sections[k.Value]
			if !ok {
				known := []string{"global", "server", "log", "collectors"}
				for name := range c.Sections {
					known = append(known, name)
				}
				sort.Strings(known)
				err = &confyaml.Error{File: file, Line: k.Line, Column: k.Column, Path: k.Value,
					Msg: "unknown section (known: " + strings.Join(known, ", ") + ")"}
				break
			}
			err = confyaml.Decode(file, k.Value, v, sec)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

// decode fills the collector sections from the "collectors:" mapping.
func (cc CollectorsConfig) decode(file string, node *yaml.Node) error {
	if node.Kind == 0 || node.Tag == "!!null" {
		return nil
	}
	if node.Kind != yaml.MappingNode {
		return &confyaml.Error{File: file, Line: node.Line, Column: node.Column, Path: "collectors", Msg: "must be a mapping of collector names to settings"}
	}
	var errs []error
	for i := 0; i+1 < len(node.Content); i += 2 {
		k, v := node.Content[i], node.Content[i+1]
		path := "collectors." + k.Value
		sec, ok := cc[k.Value]
		if !ok {
			errs = append(errs, &confyaml.Error{File: file, Line: k.Line, Column: k.Column, Path: path,
				Msg: "unknown collector (known: " + strings.Join(cc.names(), ", ") + ")"})
			continue
		}
		if v.Tag == "!!null" {
			sec.Enabled = true
			continue
		}
		if v.Kind != yaml.MappingNode {
			errs = append(errs, &confyaml.Error{File: file, Line: v.Line, Column: v.Column, Path: path, Msg: "must be a mapping"})
			continue
		}
		// "enabled" is common to every section; the rest belongs to the
		// collector's own Config type.
		rest := &yaml.Node{Kind: yaml.MappingNode, Tag: v.Tag, Line: v.Line, Column: v.Column}
		enabled := true
		for j := 0; j+1 < len(v.Content); j += 2 {
			if v.Content[j].Value == "enabled" {
				if err := confyaml.Decode(file, path+".enabled", v.Content[j+1], &enabled); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			rest.Content = append(rest.Content, v.Content[j], v.Content[j+1])
		}
		sec.Enabled = enabled
		if err := confyaml.Decode(file, path, rest, sec.Config); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (cc CollectorsConfig) names() []string {
	names := make([]string, 0, len(cc))
	for n := range cc {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Validate checks every section and returns all problems, each prefixed
// with its field path.
func (c *Config) Validate() error {
	var errs []error
	var add func(path string, err error)
	add = func(path string, err error) {
		if err == nil {
			return
		}
		// Prefix every problem of a joined error, not just the first line.
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				add(path, e)
			}
			return
		}
		errs = append(errs, fmt.Errorf("%s: %w", path, err))
	}
	for _, p := range []struct{ name, v string }{{"procfs", c.Global.ProcFS}, {"sysfs", c.Global.SysFS}, {"rootfs", c.Global.RootFS}} {
		if !strings.HasPrefix(p.v, "/") {
			add("global."+p.name, fmt.Errorf("must be an absolute path, got %q", p.v))
		}
	}
	add("global.keep_capabilities", validateKeepCapabilities(c.Global.KeepCapabilities))
	add("global.memory_limit", validateMemoryLimit(c.Global.MemoryLimit))
	if c.Global.CollectorTimeout <= 0 {
		add("global.collector_timeout", fmt.Errorf("must be positive, got %s", c.Global.CollectorTimeout))
	}
	if _, _, err := net.SplitHostPort(c.Server.ListenAddress); err != nil {
		add("server.listen_address", err)
	}
	if c.Server.ReadHeaderTimeout <= 0 {
		add("server.read_header_timeout", fmt.Errorf("must be positive, got %s", c.Server.ReadHeaderTimeout))
	}
	if c.Server.MaxRequests < 0 {
		add("server.max_requests", fmt.Errorf("must not be negative, got %d", c.Server.MaxRequests))
	}
	if err := c.Server.validate(apiTokenFile(c)); err != nil {
		errs = append(errs, err)
	}
	if _, err := parseLevel(c.Log.Level); err != nil {
		add("log.level", err)
	}
	switch c.Log.Format {
	case "auto", "json", "text":
	default:
		add("log.format", fmt.Errorf("must be auto, json or text, got %q", c.Log.Format))
	}
	for _, name := range c.Collectors.names() {
		sec := c.Collectors[name]
		if sec.Enabled {
			add("collectors."+name, sec.Config.Validate())
		}
	}
	for _, f := range component.Factories(component.KindSection) {
		if sec, ok := c.Sections[f.Name]; ok {
			add(f.Name, sec.Validate())
		}
	}
	return errors.Join(errs...)
}

// sameCollector reports whether two sections would build the same
// collector, so a reload can keep a running collector untouched.
func sameCollector(a, b *CollectorConfig) bool {
	return a != nil && b != nil && a.Enabled == b.Enabled && reflect.DeepEqual(a.Config, b.Config)
}

// sameSection reports whether a section and what its files hold are
// unchanged between two configurations.
func sameSection(old, cfg *Config, name string) bool {
	return reflect.DeepEqual(old.Sections[name], cfg.Sections[name]) && old.digests[name] == cfg.digests[name]
}
