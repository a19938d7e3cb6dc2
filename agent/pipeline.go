package agent

import (
	"context"

	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// discardTraces and discardLogs stand in for the exporters when none is
// configured, so collectors never check for a nil consumer.
var (
	discardTraces = mustTraces(consumer.NewTraces(func(context.Context, ptrace.Traces) error { return nil }))
	discardLogs   = mustLogs(consumer.NewLogs(func(context.Context, plog.Logs) error { return nil }))
)

func mustTraces(c consumer.Traces, err error) consumer.Traces {
	if err != nil {
		panic(err)
	}
	return c
}

func mustLogs(c consumer.Logs, err error) consumer.Logs {
	if err != nil {
		panic(err)
	}
	return c
}
