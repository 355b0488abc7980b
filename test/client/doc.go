// Package client holds the same-as-runc tests: scenarios written with
// containerd's own Go client (v2.4.2, the library ctr, nerdctl and the CRI
// plugin are built on), each run on runc and on kata-go on the same daemon.
//
// It is its own module because containerd 2.4's client needs a newer
// containerd API module than the containerd 1.7 shim library the runtime is
// built on (that library's ttrpc event client is gone from API ≥ 1.9): the
// tests may use the newest client without moving the runtime's dependencies.
// `make test-integration` runs it after ./test/integration.
package client
