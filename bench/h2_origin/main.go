// The origin of the benchmark's HTTP/2 section: HTTP/1.1 and h2c (prior
// knowledge or Upgrade) on one port, so every target reaches the same
// process. GET / answers a small body; POST /echo.Echo/Unary is a gRPC unary
// echo written by hand (no grpc-go: the message is echoed as received).
// Env: PORT, HOST. Prints "listening <port>" once it accepts connections.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"
)

var body = []byte("hello from the origin\n")

func plain(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("content-type", "text/plain")
	w.Write(body)
}

// A gRPC unary call: one length-prefixed message in, the same message out,
// status in the trailers. A malformed frame is a gRPC INTERNAL (13), as a
// gRPC server reports it.
func unary(w http.ResponseWriter, r *http.Request) {
	msg, err := io.ReadAll(r.Body)
	w.Header().Set("content-type", "application/grpc")
	if err != nil || len(msg) < 5 || int(msg[1])<<24|int(msg[2])<<16|int(msg[3])<<8|int(msg[4]) != len(msg)-5 {
		w.WriteHeader(http.StatusOK)
		w.Header().Set(http.TrailerPrefix+"grpc-status", "13")
		w.Header().Set(http.TrailerPrefix+"grpc-message", "request is not one length-prefixed gRPC message")
		return
	}
	// Headers flushed first, as grpc-go sends them: no content-length, the
	// message in DATA, then the trailers.
	w.WriteHeader(http.StatusOK)
	w.(http.Flusher).Flush()
	w.Write(msg)
	w.Header().Set(http.TrailerPrefix+"grpc-status", "0")
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8081"
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /", plain)
	mux.HandleFunc("POST /echo.Echo/Unary", unary)
	// Generous stream limits: the load generator opens many streams per
	// connection and the origin must not be what limits them.
	h2 := &http2.Server{MaxConcurrentStreams: 1000}
	srv := &http.Server{Handler: h2c.NewHandler(mux, h2)}
	l, err := net.Listen("tcp", net.JoinHostPort(os.Getenv("HOST"), port))
	if err != nil {
		fmt.Fprintf(os.Stderr, "h2_origin: cannot listen on port %s: %v\n", port, err)
		os.Exit(1)
	}
	fmt.Printf("listening %d\n", l.Addr().(*net.TCPAddr).Port)
	if err := srv.Serve(l); err != nil {
		fmt.Fprintf(os.Stderr, "h2_origin: %v\n", err)
		os.Exit(1)
	}
}
