package adminapi

import (
	"net/http"
	"time"
)

// Server timeouts, by default. A report (/usage/report) may take minutes
// when it asks a separate FUSE server for every layer's figures: the write
// timeout leaves it room.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 5 * time.Minute
	DefaultIdleTimeout       = 2 * time.Minute
)

type serverConfig struct {
	readHeader, read, write, idle time.Duration
}

// ServerOpt configures NewServer.
type ServerOpt func(*serverConfig)

// WithIdleTimeout sets how long a keep-alive connection may wait for its
// next request (DefaultIdleTimeout otherwise; d must be positive).
func WithIdleTimeout(d time.Duration) ServerOpt {
	return func(c *serverConfig) {
		if d > 0 {
			c.idle = d
		}
	}
}

// NewServer returns an HTTP server of h whose every wait is bounded: the
// request header and body, the response, and the idle time between
// requests on a keep-alive connection. Without them a client (any host that
// reaches a TCP metrics-address) could hold connections open forever.
func NewServer(h http.Handler, opts ...ServerOpt) *http.Server {
	c := serverConfig{readHeader: DefaultReadHeaderTimeout, read: DefaultReadTimeout, write: DefaultWriteTimeout, idle: DefaultIdleTimeout}
	for _, o := range opts {
		o(&c)
	}
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: c.readHeader,
		ReadTimeout:       c.read,
		WriteTimeout:      c.write,
		IdleTimeout:       c.idle,
	}
}
