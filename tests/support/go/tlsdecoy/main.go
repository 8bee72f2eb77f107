// tlsdecoy is the REALITY decoy ("dest") of the agent's Xray tests: an
// HTTPS server (TLS 1.3, HTTP/2 and HTTP/1.1) with a self-signed
// certificate, run inside the tests' "internet" namespace so that nothing
// leaves the machine. Go's crypto/tls writes one record per handshake
// message, as the public servers REALITY borrows from do (REALITY reads
// them one by one; a server that coalesces them stalls it).
//
// Usage: tlsdecoy -listen HOST:PORT -cert FILE -key FILE
// Prints "listening PORT" once it accepts connections.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8443", "address to listen on")
	certFile := flag.String("cert", "", "certificate PEM")
	keyFile := flag.String("key", "", "private key PEM")
	flag.Parse()
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatalf("tlsdecoy: %v", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatalf("tlsdecoy: %v", err)
	}
	server := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("decoy\n"))
		}),
		TLSConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS13,
			NextProtos:   []string{"h2", "http/1.1"},
		},
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(os.Stdout, "listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	log.Fatal(server.ServeTLS(ln, "", ""))
}
