package host

import (
	"errors"
	"fmt"
	"regexp"
	"regexp/syntax"
	"time"
)

// Default exclusions, the same as node_exporter 1.9's defaults on Linux
// (--collector.filesystem.mount-points-exclude, --collector.filesystem.fs-types-exclude,
// --collector.diskstats.device-exclude, --collector.vmstat.fields). The
// network device exclusion is empty, as in node_exporter (Debian's package
// patches it to ^lo$).
const (
	DefaultMountPointsExclude = `^/(dev|proc|run/credentials/.+|sys|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`
	DefaultFSTypesExclude     = `^(autofs|binfmt_misc|bpf|cgroup2?|configfs|debugfs|devpts|devtmpfs|fusectl|hugetlbfs|iso9660|mqueue|nsfs|overlay|proc|procfs|pstore|rpc_pipefs|securityfs|selinuxfs|squashfs|erofs|sysfs|tracefs)$`
	DefaultDiskDeviceExclude  = `^(z?ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`
	DefaultVMStatFields       = `^(oom_kill|pgpg|pswp|pg.*fault).*`
	DefaultMountTimeout       = 5 * time.Second
	DefaultStatWorkers        = 4
)

// Config is the collectors.host section.
type Config struct {
	Filesystem FilesystemConfig `yaml:"filesystem"`
	Disk       DiskConfig       `yaml:"disk"`
	Network    NetworkConfig    `yaml:"network"`
	VMStat     VMStatConfig     `yaml:"vmstat"`
}

// FilesystemConfig selects the mounts reported as node_filesystem_*.
type FilesystemConfig struct {
	// MountPointsExclude is a regexp of mount points not to report.
	MountPointsExclude string `yaml:"mount_points_exclude"`
	// FSTypesExclude is a regexp of filesystem types not to report.
	FSTypesExclude string `yaml:"fs_types_exclude"`
	// MountTimeout bounds one statfs call. A mount that does not answer in
	// time is reported with node_filesystem_device_error 1 and is not asked
	// again until the hung call returns.
	MountTimeout time.Duration `yaml:"mount_timeout"`
	// StatWorkers is how many statfs calls run at once.
	StatWorkers int `yaml:"stat_workers"`
}

// DiskConfig selects the block devices reported as node_disk_*.
type DiskConfig struct {
	// DeviceExclude is a regexp of device names (as in /proc/diskstats) not
	// to report.
	DeviceExclude string `yaml:"device_exclude"`
}

// NetworkConfig selects the network devices reported as node_network_*.
type NetworkConfig struct {
	// DeviceExclude is a regexp of interface names not to report; empty
	// reports every interface.
	DeviceExclude string `yaml:"device_exclude"`
}

// VMStatConfig selects the /proc/vmstat fields reported as node_vmstat_*.
type VMStatConfig struct {
	// Fields is a regexp of field names to report (empty reports every
	// field).
	Fields string `yaml:"fields"`
}

// NewConfig returns the default configuration.
func NewConfig() *Config {
	return &Config{
		Filesystem: FilesystemConfig{
			MountPointsExclude: DefaultMountPointsExclude,
			FSTypesExclude:     DefaultFSTypesExclude,
			MountTimeout:       DefaultMountTimeout,
			StatWorkers:        DefaultStatWorkers,
		},
		Disk:   DiskConfig{DeviceExclude: DefaultDiskDeviceExclude},
		VMStat: VMStatConfig{Fields: DefaultVMStatFields},
	}
}

// Validate returns every problem in the section, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	for _, re := range c.regexps() {
		if _, err := regexp.Compile(re.value); err != nil {
			errs = append(errs, fmt.Errorf("%s: invalid regexp %q: %w", re.field, re.value, unwrapSyntax(err)))
		}
	}
	if c.Filesystem.MountTimeout <= 0 {
		errs = append(errs, fmt.Errorf("filesystem.mount_timeout: must be positive, got %s", c.Filesystem.MountTimeout))
	}
	if c.Filesystem.StatWorkers < 1 {
		errs = append(errs, fmt.Errorf("filesystem.stat_workers: must be at least 1, got %d", c.Filesystem.StatWorkers))
	}
	return errors.Join(errs...)
}

type namedRegexp struct{ field, value string }

func (c *Config) regexps() []namedRegexp {
	return []namedRegexp{
		{"filesystem.mount_points_exclude", c.Filesystem.MountPointsExclude},
		{"filesystem.fs_types_exclude", c.Filesystem.FSTypesExclude},
		{"disk.device_exclude", c.Disk.DeviceExclude},
		{"network.device_exclude", c.Network.DeviceExclude},
		{"vmstat.fields", c.VMStat.Fields},
	}
}

// unwrapSyntax keeps regexp's own message ("missing closing ]: `[a`")
// without repeating the "error parsing regexp:" prefix.
func unwrapSyntax(err error) error {
	var se *syntax.Error
	if errors.As(err, &se) {
		return errors.New(se.Code.String() + ": `" + se.Expr + "`")
	}
	return err
}

// compileOptional compiles a validated regexp; an empty one matches nothing.
func compileOptional(re string) *regexp.Regexp {
	if re == "" {
		return nil
	}
	return regexp.MustCompile(re)
}
