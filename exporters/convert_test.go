package exporters

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.opentelemetry.io/collector/pdata/pmetric"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func readFamilies(t *testing.T, file string) []*dto.MetricFamily {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*dto.MetricFamily, 0, len(m))
	for _, mf := range m {
		out = append(out, mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out
}

var testNode = NodeResource{HostName: "node-a", HostID: "0123456789abcdef", OSType: "linux", K8sNodeName: "node-a",
	Extra: map[string]string{"deployment.environment.name": "test"}}

func golden(t *testing.T, md pmetric.Metrics, file string) {
	t.Helper()
	raw, err := (&pmetric.JSONMarshaler{}).MarshalMetrics(md)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	path := filepath.Join("testdata", file)
	if *update {
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Errorf("%s differs from the conversion; got:\n%s", path, buf.String())
	}
}

func TestConvertOTLPForm(t *testing.T) {
	c := Converter{Node: testNode, Start: time.Unix(1700000000, 0)}
	md := c.Convert(readFamilies(t, "testdata/gathered.prom"), time.Unix(1700000100, 0), FormOTLP)
	golden(t, md, "otlp_form.golden.json")

	// The checks a user makes: three resources (node, the cart pod, the
	// nginx unit), the pod's identity as semantic-convention attributes and
	// not as data-point attributes.
	rms := md.ResourceMetrics()
	if rms.Len() != 3 {
		t.Fatalf("%d resources, want 3 (node, pod, systemd unit)", rms.Len())
	}
	var pod pmetric.ResourceMetrics
	for i := 0; i < rms.Len(); i++ {
		if v, ok := rms.At(i).Resource().Attributes().Get(AttrK8sPodName); ok && v.Str() == "cart-7d9f-x2" {
			pod = rms.At(i)
		}
	}
	attrs := pod.Resource().Attributes().AsRaw()
	for k, want := range map[string]string{
		AttrK8sNamespaceName: "shop", AttrK8sContainerName: "cart", AttrK8sPodUID: "0b1c-22", AttrContainerID: "3f2a",
		"k8s.deployment.name": "cart", AttrServiceName: "cart", AttrHostName: "node-a", AttrHostID: "0123456789abcdef",
		AttrOSType: "linux", AttrK8sNodeName: "node-a", "deployment.environment.name": "test",
	} {
		if attrs[k] != want {
			t.Errorf("pod resource %s = %v, want %q", k, attrs[k], want)
		}
	}
	ms := pod.ScopeMetrics().At(0).Metrics()
	for i := 0; i < ms.Len(); i++ {
		if ms.At(i).Name() != "http_request_duration_seconds" {
			continue
		}
		dp := ms.At(i).Histogram().DataPoints().At(0)
		if dp.Attributes().Len() != 0 {
			t.Errorf("histogram point keeps workload labels: %v", dp.Attributes().AsRaw())
		}
		if got := dp.BucketCounts().AsRaw(); len(got) != 3 || got[0] != 5 || got[1] != 3 || got[2] != 1 {
			t.Errorf("bucket counts = %v, want [5 3 1]", got)
		}
	}
	if md.DataPointCount() != 8 {
		t.Errorf("%d data points, want 8", md.DataPointCount())
	}
}

func TestConvertPrometheusForm(t *testing.T) {
	c := Converter{Node: testNode, Start: time.Unix(1700000000, 0)}
	md := c.Convert(readFamilies(t, "testdata/gathered.prom"), time.Unix(1700000100, 0), FormPrometheus)
	golden(t, md, "prometheus_form.golden.json")
	if md.ResourceMetrics().Len() != 1 {
		t.Fatalf("%d resources, want the node's only", md.ResourceMetrics().Len())
	}
	res := md.ResourceMetrics().At(0).Resource().Attributes().AsRaw()
	if res[AttrServiceName] != "vigil" || res[AttrServiceInstanceID] != "node-a" {
		t.Errorf("resource = %v (service.name and service.instance.id become job and instance)", res)
	}
	// Labels stay as on /metrics, without the empty ones.
	ms := md.ResourceMetrics().At(0).ScopeMetrics().At(0).Metrics()
	found := false
	for i := 0; i < ms.Len(); i++ {
		if ms.At(i).Name() != "vigil_container_cpu_seconds_total" {
			continue
		}
		got := ms.At(i).Sum().DataPoints().At(1).Attributes().AsRaw()
		if len(got) != 1 || got["unit"] != "nginx.service" {
			t.Errorf("unit series labels = %v", got)
		}
		found = true
	}
	if !found || !strings.Contains(md.ResourceMetrics().At(0).ScopeMetrics().At(0).Scope().Name(), "vigil") {
		t.Error("workload counter missing")
	}
}
