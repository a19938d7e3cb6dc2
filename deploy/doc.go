// Package deploy holds Vigil's installation artefacts — the kustomize base
// in kubernetes/, the Helm chart in helm/vigil/ and the systemd unit in
// systemd/ — and their tests: the Helm and kustomize renderings agree, both
// apply to a real API server (server-side dry-run, then for real), the
// ServiceAccount's rights are exactly what the collectors and actuators
// call, and the agent binary works with that ServiceAccount's token.
//
// The chart's dashboards/ folder is a copy of the repository's generated
// dashboards/json/*.json, refreshed by `make generate` (go generate) so that the
// chart stays self-contained for `helm package`. The RBAC rules have one
// source, rbac/rules.yaml; cmd/genrbac writes the kustomize base's
// rbac.yaml, the chart's templates/_rbac.tpl and healing/rbac.yaml from it.
package deploy

//go:generate sh -c "rm -f helm/vigil/dashboards/*.json && cp ../dashboards/json/*.json helm/vigil/dashboards/"
//go:generate go run ./cmd/genrbac
