// Command vigil is the Vigil node agent: it collects host, cgroup, eBPF and
// log telemetry, evaluates Prometheus rules on the node and remediates
// failing services.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/version"

	"github.com/vigil-agent/vigil/agent"
)

func main() {
	// The agent's live heap is small and allocation at rest is low: collect
	// at 50% growth instead of Go's 100% so the heap stays near what is
	// live (docs/cost.md). GOGC and GOMEMLIMIT in the environment win.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(50)
	}
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// startupSettle is how long after start the executable's start-up pages
// are released (releaseStartupPages).
const startupSettle = 30 * time.Second

// Main runs the command line and returns the process exit code: 0 on
// success, 1 when the work failed (a bad file, a failed run), 2 on a usage
// error.
func Main(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("vigil", "Vigil watches this node and heals it: host, cgroup, eBPF and log telemetry, Prometheus rules evaluated locally, and guarded remediation.")
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	// --help and --version print and then "terminate"; remember that
	// instead of exiting, so Main stays testable and runs nothing after.
	terminated := -1
	app.Terminate(func(code int) {
		if terminated < 0 {
			terminated = code
		}
	})
	app.HelpFlag.Short('h')

	run := app.Command("run", "Run the agent.")
	runConfig := run.Flag("config", "Configuration file (YAML). Without it, the embedded default configuration is used.").PlaceHolder("FILE").String()
	runListen := run.Flag("web.listen-address", "Address for /metrics and the API; overrides server.listen_address (default "+agent.DefaultListenAddress+").").PlaceHolder("ADDR").String()
	runWebConfig := run.Flag("web.config.file", "Web configuration file (exporter-toolkit format: TLS, client certificates, basic auth); overrides server.web_config_file.").PlaceHolder("FILE").String()
	runLifecycle := run.Flag("web.enable-lifecycle", "Serve POST /-/reload (behind the API token, healing.auth_token_file); same as server.enable_lifecycle: true.").Bool()

	cfgCmd := app.Command("config", "Configuration tools.")
	cfgCheck := cfgCmd.Command("check", "Check configuration files; print every problem with its file, line and field path.")
	cfgCheckFiles := cfgCheck.Arg("file", "Configuration files to check.").Required().Strings()
	cfgShowDefault := cfgCmd.Command("default", "Print the embedded default configuration.")

	versionCmd := app.Command("version", "Print version information.")

	extra := map[string]func(stdout, stderr io.Writer) int{}
	for _, setup := range subcommands {
		name, run := setup(app)
		extra[name] = run
	}

	cmd, err := app.Parse(args)
	if terminated >= 0 {
		return terminated
	}
	if err != nil {
		fmt.Fprintf(stderr, "vigil: %v (see vigil --help)\n", err)
		return 2
	}
	switch cmd {
	case "":
		app.Usage(nil)
		return 2
	case run.FullCommand():
		return runAgent(*runConfig, agent.Options{ListenAddress: *runListen, WebConfigFile: *runWebConfig, EnableLifecycle: *runLifecycle, DropCapabilities: true, SetMemoryLimit: true}, stderr)
	case cfgCheck.FullCommand():
		return checkConfig(*cfgCheckFiles, stdout, stderr)
	case cfgShowDefault.FullCommand():
		stdout.Write(agent.DefaultConfigYAML)
		return 0
	case versionCmd.FullCommand():
		fmt.Fprintln(stdout, version.Print("vigil"))
		return 0
	}
	if run, ok := extra[cmd]; ok {
		return run(stdout, stderr)
	}
	return 0
}

// subcommands are added by other files of this package (rules, status, …)
// from init functions: each declares its command and flags on app and
// returns the command's full name and what runs it.
var subcommands []func(app *kingpin.Application) (fullCommand string, run func(stdout, stderr io.Writer) int)

func checkConfig(files []string, stdout, stderr io.Writer) int {
	code := 0
	for _, f := range files {
		if _, err := agent.LoadFile(f); err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			code = 1
			continue
		}
		fmt.Fprintf(stdout, "%s: OK\n", f)
	}
	return code
}

// runAgent runs the agent; opts carries the command line's overrides.
func runAgent(configFile string, opts agent.Options, stderr io.Writer) int {
	var (
		cfg *agent.Config
		err error
	)
	if configFile == "" {
		cfg, err = agent.LoadDefault()
	} else {
		cfg, err = agent.LoadFile(configFile)
	}
	if err != nil {
		fmt.Fprintf(stderr, "vigil: cannot load configuration: %v\n", err)
		return 1
	}
	level := new(slog.LevelVar)
	logger := agent.NewLogger(stderr, cfg.Log.Format, level)
	opts.ConfigFile, opts.Logger, opts.LogLevel = configFile, logger, level
	a, err := agent.New(cfg, opts)
	if err != nil {
		logger.Error("cannot build the agent", "err", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = a.Reload(ctx) // a failure is logged and counted by Reload
			}
		}
	}()
	logger.Info("starting vigil", "version", version.Info(), "build", version.BuildContext())
	go func() {
		// Start-up (every package's init, loading the eBPF objects, the
		// first informer lists and rule evaluations) touches much code it
		// never runs again; once it has settled, hand those pages back.
		select {
		case <-ctx.Done():
		case <-time.After(startupSettle):
			if n := releaseStartupPages(); n > 0 {
				logger.Debug("released start-up pages of the executable", "bytes", n)
			}
		}
	}()
	if err := a.Run(ctx); err != nil {
		logger.Error("vigil failed", "err", err)
		return 1
	}
	return 0
}
