//go:build linux

package host

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/vigil-agent/vigil/agent"
)

func TestConfigDefaultsAreValid(t *testing.T) {
	if err := NewConfig().Validate(); err != nil {
		t.Fatalf("default configuration is invalid: %v", err)
	}
}

func TestConfigValidateNamesEveryBadField(t *testing.T) {
	c := NewConfig()
	c.Filesystem.MountPointsExclude = "^/(dev"
	c.Filesystem.FSTypesExclude = "[z-a]"
	c.Disk.DeviceExclude = "(?P<>x)"
	c.Network.DeviceExclude = "*"
	c.VMStat.Fields = "a{2,1}"
	c.Filesystem.MountTimeout = 0
	c.Filesystem.StatWorkers = 0
	err := c.Validate()
	if err == nil {
		t.Fatal("Validate accepted bad regexps, a zero timeout and zero workers")
	}
	for _, field := range []string{
		"filesystem.mount_points_exclude", "filesystem.fs_types_exclude", "disk.device_exclude",
		"network.device_exclude", "vmstat.fields", "filesystem.mount_timeout", "filesystem.stat_workers",
	} {
		if !strings.Contains(err.Error(), field+":") {
			t.Errorf("error does not name %s:\n%v", field, err)
		}
	}
}

func loadFile(t *testing.T, name string) (*agent.Config, error) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return agent.Load(name, data)
}

func TestConfigTypoFailsThroughAgentLoad(t *testing.T) {
	_, err := loadFile(t, "testdata/config-typo.yaml")
	if err == nil {
		t.Fatal("a misspelt key in collectors.host was accepted")
	}
	want := "testdata/config-typo.yaml:5:7: collectors.host.filesystem.mount_point_exclude: unknown field"
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error = %v\nwant it to contain %q", err, want)
	}
}

func TestConfigBadRegexpFailsThroughAgentLoad(t *testing.T) {
	_, err := loadFile(t, "testdata/config-bad-regexp.yaml")
	if err == nil {
		t.Fatal("bad regexps in collectors.host were accepted")
	}
	for _, want := range []string{
		"collectors.host: disk.device_exclude: invalid regexp \"^(sd[a-z\"",
		"network.device_exclude: invalid regexp \"*\": missing argument to repetition operator",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not contain %q:\n%v", want, err)
		}
	}
}

func TestConfigThroughAgentLoad(t *testing.T) {
	cfg, err := loadFile(t, "testdata/config-valid.yaml")
	if err != nil {
		t.Fatal(err)
	}
	sec := cfg.Collectors[Name]
	if sec == nil || !sec.Enabled {
		t.Fatalf("collectors.host missing or disabled: %+v", sec)
	}
	got := sec.Config.(*Config)
	want := Config{
		Filesystem: FilesystemConfig{
			MountPointsExclude: "^/(dev|proc|sys)($|/)",
			FSTypesExclude:     "^tmpfs$",
			MountTimeout:       2 * time.Second,
			StatWorkers:        2,
		},
		Disk:    DiskConfig{DeviceExclude: `^loop\d+$`},
		Network: NetworkConfig{DeviceExclude: "^lo$"},
		VMStat:  VMStatConfig{Fields: "^pgmajfault$"},
	}
	if *got != want {
		t.Fatalf("decoded section\n got %+v\nwant %+v", *got, want)
	}

	// Without a host section every default applies and the collector is on.
	// (The embedded default also has the rules and healing sections, which
	// this test binary does not register.)
	def, err := agent.Load("<no host section>", []byte("log:\n  level: info\n"))
	if err != nil {
		t.Fatal(err)
	}
	if sec := def.Collectors[Name]; !sec.Enabled || *sec.Config.(*Config) != *NewConfig() {
		t.Fatalf("default host section = %+v", sec)
	}
}
