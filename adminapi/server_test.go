package adminapi

import (
	"bufio"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServerClosesIdleConnections: a keep-alive connection that sends no
// further request is closed by the server.
func TestServerClosesIdleConnections(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), WithIdleTimeout(200*time.Millisecond))
	go srv.Serve(l)
	defer srv.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	if _, err := br.ReadByte(); err == nil || time.Since(start) > 4*time.Second {
		t.Fatalf("idle connection after %v: %v; want it closed by the server", time.Since(start), err)
	}
}
