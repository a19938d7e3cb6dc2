package exporters

import (
	"math"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-agent/vigil/collectors/workload"
)

// ScopeName is the instrumentation scope of every metric Vigil exports.
const ScopeName = "github.com/vigil-agent/vigil"

// Form says how gathered samples are laid out in OTLP.
type Form int

const (
	// FormOTLP groups samples by workload: one resource per workload
	// identity, carrying k8s.* / container.id attributes, with the workload
	// labels removed from the data points; samples without workload labels
	// go to the node's resource.
	FormOTLP Form = iota
	// FormPrometheus keeps every sample's labels as they are on /metrics
	// (Prometheus label names) under one node resource, whose service.name
	// and service.instance.id become job and instance in remote write.
	FormPrometheus
)

// Converter turns gathered Prometheus metric families into pdata metrics.
type Converter struct {
	Node NodeResource
	// Start is the start time of cumulative series that carry no created
	// timestamp: the agent's start.
	Start time.Time
}

type resourceBuilder struct {
	sm         pmetric.ScopeMetrics
	lastFamily *dto.MetricFamily
	metric     pmetric.Metric
}

// Convert converts families gathered at now. Counters become cumulative
// monotonic sums, gauges and untyped samples gauges, histograms cumulative
// explicit-bucket histograms, summaries summaries.
func (c *Converter) Convert(mfs []*dto.MetricFamily, now time.Time, form Form) pmetric.Metrics {
	md := pmetric.NewMetrics()
	resources := map[string]*resourceBuilder{}
	nowTS := pcommon.NewTimestampFromTime(now)
	startTS := pcommon.NewTimestampFromTime(c.Start)
	var key strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key.Reset()
			if form == FormOTLP {
				for _, lp := range m.GetLabel() {
					if workload.IsLabel(lp.GetName()) && lp.GetValue() != "" {
						key.WriteString(lp.GetName())
						key.WriteByte(0)
						key.WriteString(lp.GetValue())
						key.WriteByte(0)
					}
				}
			}
			rb := resources[key.String()]
			if rb == nil {
				rb = c.newResource(md, m, form)
				resources[key.String()] = rb
			}
			if rb.lastFamily != mf {
				rb.lastFamily = mf
				rb.metric = rb.sm.Metrics().AppendEmpty()
				rb.metric.SetName(mf.GetName())
				rb.metric.SetDescription(mf.GetHelp())
				rb.metric.SetUnit(mf.GetUnit())
				switch mf.GetType() {
				case dto.MetricType_COUNTER:
					s := rb.metric.SetEmptySum()
					s.SetIsMonotonic(true)
					s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
				case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
					rb.metric.SetEmptyHistogram().SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
				case dto.MetricType_SUMMARY:
					rb.metric.SetEmptySummary()
				default:
					rb.metric.SetEmptyGauge()
				}
			}
			ts := nowTS
			if m.TimestampMs != nil {
				ts = pcommon.NewTimestampFromTime(time.UnixMilli(m.GetTimestampMs()))
			}
			var attrs pcommon.Map
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				dp := rb.metric.Sum().DataPoints().AppendEmpty()
				dp.SetTimestamp(ts)
				dp.SetStartTimestamp(created(m.GetCounter().GetCreatedTimestamp(), startTS))
				dp.SetDoubleValue(m.GetCounter().GetValue())
				attrs = dp.Attributes()
			case dto.MetricType_GAUGE:
				dp := rb.metric.Gauge().DataPoints().AppendEmpty()
				dp.SetTimestamp(ts)
				dp.SetDoubleValue(m.GetGauge().GetValue())
				attrs = dp.Attributes()
			case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
				h := m.GetHistogram()
				dp := rb.metric.Histogram().DataPoints().AppendEmpty()
				dp.SetTimestamp(ts)
				dp.SetStartTimestamp(created(h.GetCreatedTimestamp(), startTS))
				count := h.GetSampleCount()
				if count == 0 && h.GetSampleCountFloat() > 0 {
					count = uint64(h.GetSampleCountFloat())
				}
				dp.SetCount(count)
				dp.SetSum(h.GetSampleSum())
				var prev uint64
				for _, b := range h.GetBucket() {
					if math.IsInf(b.GetUpperBound(), +1) {
						continue
					}
					cum := b.GetCumulativeCount()
					if cum == 0 && b.GetCumulativeCountFloat() > 0 {
						cum = uint64(b.GetCumulativeCountFloat())
					}
					dp.ExplicitBounds().Append(b.GetUpperBound())
					dp.BucketCounts().Append(cum - min(prev, cum))
					prev = cum
				}
				dp.BucketCounts().Append(count - min(prev, count))
				attrs = dp.Attributes()
			case dto.MetricType_SUMMARY:
				s := m.GetSummary()
				dp := rb.metric.Summary().DataPoints().AppendEmpty()
				dp.SetTimestamp(ts)
				dp.SetStartTimestamp(created(s.GetCreatedTimestamp(), startTS))
				dp.SetCount(s.GetSampleCount())
				dp.SetSum(s.GetSampleSum())
				for _, q := range s.GetQuantile() {
					qv := dp.QuantileValues().AppendEmpty()
					qv.SetQuantile(q.GetQuantile())
					qv.SetValue(q.GetValue())
				}
				attrs = dp.Attributes()
			default: // untyped
				dp := rb.metric.Gauge().DataPoints().AppendEmpty()
				dp.SetTimestamp(ts)
				dp.SetDoubleValue(m.GetUntyped().GetValue())
				attrs = dp.Attributes()
			}
			attrs.EnsureCapacity(len(m.GetLabel()))
			for _, lp := range m.GetLabel() {
				if lp.GetValue() == "" || (form == FormOTLP && workload.IsLabel(lp.GetName())) {
					continue
				}
				attrs.PutStr(lp.GetName(), lp.GetValue())
			}
		}
	}
	return md
}

// created returns a series' created timestamp, or fallback when the
// series has none.
func created(ts *timestamppb.Timestamp, fallback pcommon.Timestamp) pcommon.Timestamp {
	if ts != nil && ts.IsValid() && ts.GetSeconds() > 0 {
		return pcommon.NewTimestampFromTime(ts.AsTime())
	}
	return fallback
}

func (c *Converter) newResource(md pmetric.Metrics, m *dto.Metric, form Form) *resourceBuilder {
	rm := md.ResourceMetrics().AppendEmpty()
	attrs := rm.Resource().Attributes()
	if form == FormOTLP {
		var id workload.Identity
		for _, lp := range m.GetLabel() {
			id.SetLabel(lp.GetName(), lp.GetValue())
		}
		id.PutAttributes(attrs)
	} else {
		inst := c.Node.K8sNodeName
		if inst == "" {
			inst = c.Node.HostName
		}
		if inst != "" {
			attrs.PutStr(AttrServiceInstanceID, inst)
		}
	}
	c.Node.Apply(attrs)
	sm := rm.ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(ScopeName)
	return &resourceBuilder{sm: sm}
}
