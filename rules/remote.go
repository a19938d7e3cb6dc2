package rules

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/config"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
)

// remoteSet maps rule groups to remote query endpoints.
type remoteSet struct {
	endpoints []*remoteEndpoint
}

type remoteEndpoint struct {
	cfg     RemoteQueryConfig
	groups  []*regexp.Regexp
	api     v1.API
	queries *prometheus.CounterVec
}

// newRemoteSet builds a client for each endpoint; counter counts their
// queries.
func newRemoteSet(cfgs []RemoteQueryConfig, counter *prometheus.CounterVec) (*remoteSet, error) {
	rs := &remoteSet{}
	for _, c := range cfgs {
		ep := &remoteEndpoint{cfg: c, queries: counter}
		for _, g := range c.Groups {
			re, err := regexp.Compile("^(?:" + g + ")$")
			if err != nil {
				return nil, fmt.Errorf("remote_queries %s: %w", c.Name, err)
			}
			ep.groups = append(ep.groups, re)
		}
		hc := config.DefaultHTTPClientConfig
		hc.BearerTokenFile = c.BearerTokenFile
		hc.TLSConfig = config.TLSConfig{CAFile: c.TLS.CAFile, CertFile: c.TLS.CertFile, KeyFile: c.TLS.KeyFile, ServerName: c.TLS.ServerName, InsecureSkipVerify: c.TLS.InsecureSkipVerify}
		rt, err := config.NewRoundTripperFromConfig(hc, "vigil-rules-"+c.Name)
		if err != nil {
			return nil, fmt.Errorf("remote_queries %s: %w", c.Name, err)
		}
		client, err := api.NewClient(api.Config{Address: c.URL, RoundTripper: rt})
		if err != nil {
			return nil, fmt.Errorf("remote_queries %s: %w", c.Name, err)
		}
		ep.api = v1.NewAPI(client)
		rs.endpoints = append(rs.endpoints, ep)
	}
	return rs, nil
}

// forGroup returns the endpoint for a rule group, or nil for local.
func (rs *remoteSet) forGroup(group string) *remoteEndpoint {
	if rs == nil || group == "" {
		return nil
	}
	for _, ep := range rs.endpoints {
		for _, re := range ep.groups {
			if re.MatchString(group) {
				return ep
			}
		}
	}
	return nil
}

// query runs an instant query on the endpoint and converts the result to
// what the rule manager expects.
func (ep *remoteEndpoint) query(ctx context.Context, q string, t time.Time) (promql.Vector, error) {
	timeout := ep.cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	val, _, _, err := ep.api.Query(ctx, q, t, v1.WithTimeout(timeout))
	if err != nil {
		ep.queries.WithLabelValues(ep.cfg.Name, "error").Inc()
		return nil, fmt.Errorf("remote endpoint %s: %w", ep.cfg.Name, err)
	}
	ep.queries.WithLabelValues(ep.cfg.Name, "success").Inc()
	switch v := val.(type) {
	case model.Vector:
		out := make(promql.Vector, 0, len(v))
		for _, s := range v {
			b := labels.NewScratchBuilder(len(s.Metric))
			for k, lv := range s.Metric {
				b.Add(string(k), string(lv))
			}
			b.Sort()
			smp := promql.Sample{Metric: b.Labels(), T: int64(s.Timestamp), F: float64(s.Value)}
			if s.Histogram != nil {
				// Native histograms are not converted; their count stands in.
				smp.F = float64(s.Histogram.Count)
			}
			out = append(out, smp)
		}
		return out, nil
	case *model.Scalar:
		return promql.Vector{{T: int64(v.Timestamp), F: float64(v.Value), Metric: labels.EmptyLabels()}}, nil
	case nil:
		// A success answer without data ({"status":"success"} or {}).
		return nil, fmt.Errorf("remote endpoint %s: the answer has no result", ep.cfg.Name)
	default:
		return nil, fmt.Errorf("remote endpoint %s: result is a %s, not a vector or scalar", ep.cfg.Name, val.Type())
	}
}
