package dashboards

import (
	"fmt"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/logs"
	"github.com/grafana/grafana-foundation-sdk/go/loki"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Template variable names. The datasource variables hold a datasource
// UID; the others are regular expressions used with =~ in every selector.
const (
	VarDatasource = "datasource"
	VarLoki       = "loki"
	VarCluster    = "cluster"
	VarNode       = "node"
	VarNamespace  = "namespace"
	VarWorkload   = "workload"
)

// AllValues are the values the "All" option of each variable stands for.
// cluster and namespace may be absent from a series (a single Prometheus
// without a cluster label, a systemd unit without a namespace), so All
// matches the empty value too; node is the instance label, which every
// scraped series has, and Loki needs one selector that cannot match an
// empty value.
var AllValues = map[string]string{
	VarCluster:   ".*",
	VarNode:      ".+",
	VarNamespace: ".*",
	VarWorkload:  ".*",
}

// Label selectors shared by the dashboards.
var (
	// nodeSel picks the nodes chosen in the cluster and node variables.
	// A node is the scrape's instance label: the Helm chart and the
	// systemd examples set it to the node name (see docs/dashboards.md).
	nodeSel = `cluster=~"$cluster", instance=~"$node"`
	// nsSel adds the namespace variable.
	nsSel = nodeSel + `, namespace=~"$namespace"`
	// podSel and unitSel pick the workload variable: a pod name, or a
	// systemd unit for series that have no pod.
	podSel  = nsSel + `, pod=~"$workload"`
	unitSel = nsSel + `, pod="", unit=~"$workload"`
	// byWorkload is the grouping every per-workload panel uses.
	byWorkload = "namespace, pod, unit"
)

// rateInterval is Grafana's range for rate() that is safe at any step.
const rateInterval = "[$__rate_interval]"

// perWorkload runs expr once for pods and once for units and joins the
// two with "or": expr is a format string whose one %s is a label
// selector body. With workload=All both halves match the same series and
// "or" keeps one of each.
func perWorkload(expr string) string {
	return fmt.Sprintf(expr, podSel) + "\nor\n" + fmt.Sprintf(expr, unitSel)
}

// sel returns metric{selector}.
func sel(metric, selector string, extra ...string) string {
	parts := append([]string{selector}, extra...)
	return metric + "{" + strings.Join(parts, ", ") + "}"
}

func strptr(s string) *string { return &s }

// promDS and lokiDS refer to the datasource variables.
var (
	promDS = common.DataSourceRef{Type: strptr("prometheus"), Uid: strptr("${" + VarDatasource + "}")}
	lokiDS = common.DataSourceRef{Type: strptr("loki"), Uid: strptr("${" + VarLoki + "}")}
)

// query is one Prometheus target.
type query struct {
	expr   string
	legend string
}

func q(expr, legend string) query { return query{expr: expr, legend: legend} }

func promTargets(qs []query, instant bool) []cog.Builder[variants.Dataquery] {
	var out []cog.Builder[variants.Dataquery]
	for i, x := range qs {
		b := prometheus.NewDataqueryBuilder().
			Datasource(promDS).
			RefId(string(rune('A' + i))).
			Expr(x.expr)
		if x.legend != "" {
			b = b.LegendFormat(x.legend)
		}
		if instant {
			b = b.Instant().Format(prometheus.PromQueryFormatTable)
		} else {
			b = b.Range()
		}
		out = append(out, b)
	}
	return out
}

// panelOpts are the options common to every panel kind.
type panelOpts struct {
	title, desc, unit string
	width, height     uint32
	stacked           bool
}

func (o panelOpts) size() (uint32, uint32) {
	w, h := o.width, o.height
	if w == 0 {
		w = 12
	}
	if h == 0 {
		h = 8
	}
	return w, h
}

// timeSeries is a time series panel over qs.
func timeSeries(o panelOpts, qs ...query) cog.Builder[dashboard.Panel] {
	w, h := o.size()
	b := timeseries.NewPanelBuilder().
		Title(o.title).
		Description(o.desc).
		Datasource(promDS).
		Span(w).Height(h).
		Unit(o.unit).
		FillOpacity(10).
		Legend(common.NewVizLegendOptionsBuilder().
			ShowLegend(true).
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementBottom).
			Calcs([]string{"mean", "max", "lastNotNull"}))
	if o.stacked {
		b = b.Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal))
	}
	for _, t := range promTargets(qs, false) {
		b = b.WithTarget(t)
	}
	return b
}

// statPanel is a single-value panel over qs (instant queries).
func statPanel(o panelOpts, qs ...query) cog.Builder[dashboard.Panel] {
	if o.width == 0 {
		o.width = 6
	}
	if o.height == 0 {
		o.height = 4
	}
	w, h := o.size()
	b := stat.NewPanelBuilder().
		Title(o.title).
		Description(o.desc).
		Datasource(promDS).
		Span(w).Height(h).
		Unit(o.unit).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}))
	for _, t := range promTargets(qs, true) {
		b = b.WithTarget(t)
	}
	return b
}

// tablePanel is a table of instant queries over the dashboard's range.
func tablePanel(o panelOpts, qs ...query) cog.Builder[dashboard.Panel] {
	w, h := o.size()
	b := table.NewPanelBuilder().
		Title(o.title).
		Description(o.desc).
		Datasource(promDS).
		Span(w).Height(h).
		Unit(o.unit).
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"}))
	for _, t := range promTargets(qs, true) {
		b = b.WithTarget(t)
	}
	return b
}

// logsPanel shows log lines from Loki for a LogQL query.
func logsPanel(o panelOpts, logql string) cog.Builder[dashboard.Panel] {
	w, h := o.size()
	return logs.NewPanelBuilder().
		Title(o.title).
		Description(o.desc).
		Datasource(lokiDS).
		Span(w).Height(h).
		ShowTime(true).
		WrapLogMessage(true).
		EnableLogDetails(true).
		SortOrder(common.LogsSortOrderDescending).
		WithTarget(loki.NewDataqueryBuilder().
			Datasource(lokiDS).
			RefId("A").
			Expr(logql).
			MaxLines(1000))
}

// Variables.

func datasourceVar(name, label, typ string) cog.Builder[dashboard.VariableModel] {
	return dashboard.NewDatasourceVariableBuilder(name).
		Label(label).
		Type(typ)
}

// labelVar is a multi-value query variable over label_values(series, label)
// with an All option standing for AllValues[name].
func labelVar(name, label, series, labelName string) cog.Builder[dashboard.VariableModel] {
	qry := fmt.Sprintf("label_values(%s, %s)", series, labelName)
	return queryVar(name, label, qry, "")
}

func queryVar(name, label, qry, regex string) cog.Builder[dashboard.VariableModel] {
	b := dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(promDS).
		Query(dashboard.StringOrMap{String: strptr(qry)}).
		Definition(qry).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(true).
		IncludeAll(true).
		AllValue(AllValues[name]).
		Current(dashboard.VariableOption{
			Selected: cog.ToPtr(true),
			Text:     dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}},
			Value:    dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}},
		})
	if regex != "" {
		b = b.Regex(regex)
	}
	return b
}

// WorkloadVarQuery is the workload variable's query: every pod name and
// every systemd unit without a pod, as one "workload" label (Grafana's
// query_result() around a PromQL expression; the regex keeps the value).
const workloadVarInner = `group by (workload) (label_replace(label_replace(` + mCgroupCPU +
	`{cluster=~"$cluster", instance=~"$node", namespace=~"$namespace"}, "workload", "$1", "unit", "(.+)"), "workload", "$1", "pod", "(.+)"))`

// commonVars are the variables of every dashboard: Prometheus datasource,
// cluster and node; withWorkload adds namespace and workload.
func commonVars(withWorkload bool) []cog.Builder[dashboard.VariableModel] {
	vars := []cog.Builder[dashboard.VariableModel]{
		datasourceVar(VarDatasource, "Prometheus", "prometheus"),
		labelVar(VarCluster, "Cluster", mCollectorSuccess, "cluster"),
		labelVar(VarNode, "Node", sel(mCollectorSuccess, `cluster=~"$cluster"`), "instance"),
	}
	if withWorkload {
		vars = append(vars,
			labelVar(VarNamespace, "Namespace", sel(mCgroupCPU, nodeSel), "namespace"),
			queryVar(VarWorkload, "Workload (pod or unit)", "query_result("+workloadVarInner+")", `/workload="([^"]+)"/`),
		)
	}
	return vars
}

// section is a row and its panels.
type section struct {
	title  string
	panels []panelB
}

// spec describes one dashboard.
type spec struct {
	uid, title, desc string
	tags             []string
	workloadVars     bool
	extraVars        []cog.Builder[dashboard.VariableModel]
	annotations      []cog.Builder[dashboard.AnnotationQuery]
	sections         []section
}

func (s spec) build() (Dashboard, error) {
	//lint:ignore SA1019 the builder of the v1 model (see Dashboard).
	b := dashboard.NewDashboardBuilder(s.title).
		Uid(s.uid).
		Description(s.desc).
		Tags(append([]string{"vigil"}, s.tags...)).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Link(dashboard.NewDashboardLinkBuilder("Vigil").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"vigil"}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true))
	vars := append(commonVars(s.workloadVars), s.extraVars...)
	b = b.Variables(vars)
	for _, a := range s.annotations {
		b = b.Annotation(a)
	}
	for _, sec := range s.sections {
		b = b.WithRow(dashboard.NewRowBuilder(sec.title))
		for _, p := range sec.panels {
			b = b.WithPanel(p)
		}
	}
	return b.Build()
}

// panelB is a panel builder.
type panelB = cog.Builder[dashboard.Panel]
