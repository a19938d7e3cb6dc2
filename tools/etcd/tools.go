// Package etcd pins the etcd server used by Vigil's test harness. It is a
// module of its own; hack/testenv/build.sh builds it.
package etcd
