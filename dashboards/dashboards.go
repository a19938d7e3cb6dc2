package dashboards

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// Dashboard is one dashboard in Grafana's classic JSON model (schema v1),
// the one every Grafana version imports and provisions from files. The SDK
// marks it deprecated in favour of dashboardv2, which only Grafana 12 and
// later read, behind the kubernetesDashboards feature; Vigil keeps v1 so
// that the JSON imports into the Grafana versions in use, and names the
// type once here.
//
//lint:ignore SA1019 v1 is the JSON model every Grafana version imports; see above.
type Dashboard = dashboard.Dashboard

// Builder builds one dashboard.
type Builder struct {
	// File is the JSON file's name under json/.
	File string
	// Build returns the dashboard.
	Build func() (Dashboard, error)
}

// All lists every dashboard, in a fixed order.
func All() []Builder {
	return []Builder{
		{File: "node.json", Build: Node},
		{File: "workloads.json", Build: Workloads},
		{File: "network.json", Build: Network},
		{File: "http.json", Build: HTTP},
		{File: "protocols.json", Build: Protocols},
		{File: "logs.json", Build: Logs},
		{File: "healing.json", Build: Healing},
	}
}

// Render builds every dashboard and returns its JSON by file name. The
// output is deterministic: the same code gives the same bytes.
func Render() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, b := range All() {
		d, err := b.Build()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.File, err)
		}
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(d); err != nil {
			return nil, fmt.Errorf("%s: %w", b.File, err)
		}
		out[b.File] = buf.Bytes()
	}
	return out, nil
}
