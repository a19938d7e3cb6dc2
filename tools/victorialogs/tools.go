// Package victorialogs pins VictoriaLogs (Apache-2.0), the Loki-protocol log
// store used by Vigil's test harness. It is a module of its own;
// hack/testenv/build.sh builds it.
package victorialogs
