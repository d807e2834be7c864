// Package adminapiapi is the daemon's admin HTTP API in one place: the route
// paths, which routes each kind of listener serves (the 0600 admin socket,
// a TCP or unix metrics-address), the handler registering the metrics and
// usagestore handlers under those routes, the daemon's HTTP servers
// (NewServer), and a typed Client of the routes for cvmfsctl and the tests.
//
// The handlers themselves stay with the data they serve: metrics serves
// the live accounting, usagestore the usage records.
package adminapi
