// Command h2proxy is the Go baseline of the relay benchmark
// (tests/bench/relay_go.ts), standard library only, in two modes.
//
// Proxy mode: a minimal HTTP/2 reverse proxy, the shape of the original Go
// relay's data path without its policy: TLS in (the relay's certificate, a
// client certificate verified against -client-ca if given), HTTP/2 over
// mutual TLS to the backend, headers, DATA and trailers passed through.
//
//	h2proxy -proxy -cert relay.crt -key relay.key -client-ca device-ca.crt \
//	        -backend 127.0.0.1:PORT -backend-ca ca.crt -backend-name coxswain-grpc
//
// It prints "listening PORT" once it accepts connections, and runs until
// stdin closes.
//
// Load mode: the gRPC client of the benchmark (raw gRPC framing over Go's
// HTTP/2 client, so every target sees the same client), one JSON line out.
//
//	h2proxy -load unary -target 127.0.0.1:PORT -ca ca.crt -name localhost \
//	        [-cert c1.crt,c2.crt,... -key c1.key,c2.key,...] -concurrency 32 -ms 2000
//	  → {"calls":N,"refused":N,"seconds":S,"calls_per_s":R}
//
// Each unary caller has its own connection and uses certificate i mod n, so
// 32 callers with 32 certificates are 32 devices (the relay limits calls per
// connection and per device; a refused call is counted, not fatal).
//
//	h2proxy -load bidi ... -messages 400 -size 65536
//	  → {"bytes":N,"seconds":S,"mbps":R}   (both directions counted)
//
// Before the measured part (after connection set-up and warm-up calls) it
// prints the line "measuring"; the result line follows the measured part.
//
// Both talk to the Echo service of tests/support/echo.proto.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	proxy := flag.Bool("proxy", false, "run the reverse proxy")
	load := flag.String("load", "", "run the load client: unary or bidi")
	listen := flag.String("listen", "127.0.0.1:0", "proxy: listen address")
	cert := flag.String("cert", "", "certificate chain PEM (proxy: server; load: client)")
	key := flag.String("key", "", "private key PEM")
	clientCA := flag.String("client-ca", "", "proxy: CA that client certificates must chain to")
	backend := flag.String("backend", "", "proxy: backend host:port")
	backendCA := flag.String("backend-ca", "", "proxy: CA of the backend's certificate")
	backendName := flag.String("backend-name", "coxswain-grpc", "proxy: backend TLS server name")
	target := flag.String("target", "", "load: host:port")
	ca := flag.String("ca", "", "load: CA of the target's certificate")
	name := flag.String("name", "localhost", "load: TLS server name")
	concurrency := flag.Int("concurrency", 32, "load unary: concurrent callers")
	ms := flag.Int("ms", 2000, "load unary: duration")
	messages := flag.Int("messages", 400, "load bidi: messages each way")
	size := flag.Int("size", 64*1024, "load bidi: blob bytes per message")
	flag.Parse()
	switch {
	case *proxy:
		runProxy(*listen, *cert, *key, *clientCA, *backend, *backendCA, *backendName)
	case *load != "":
		certs, keys := strings.Split(*cert, ","), strings.Split(*key, ",")
		if len(certs) != len(keys) {
			log.Fatal("-cert and -key lists differ in length")
		}
		var out any
		var err error
		if *load == "unary" {
			out, err = unaryLoad(*target, *ca, *name, certs, keys, *concurrency, time.Duration(*ms)*time.Millisecond)
		} else {
			out, err = newClient(*target, *ca, *name, certs[0], keys[0]).bidiLoad(*messages, *size)
		}
		if err != nil {
			log.Fatal(err)
		}
		json.NewEncoder(os.Stdout).Encode(out)
	default:
		log.Fatal("use -proxy or -load")
	}
}

func pool(path string) *x509.CertPool {
	pem, err := os.ReadFile(path)
	if err != nil {
		log.Fatal(err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		log.Fatalf("%s: no certificates", path)
	}
	return p
}

func keyPair(cert, key string) []tls.Certificate {
	if cert == "" {
		return nil
	}
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		log.Fatal(err)
	}
	return []tls.Certificate{kp}
}

func runProxy(listen, cert, key, clientCA, backend, backendCA, backendName string) {
	certs := keyPair(cert, key)
	upstream := &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{
			Certificates: certs,
			RootCAs:      pool(backendCA),
			ServerName:   backendName,
			MinVersion:   tls.VersionTLS13,
			NextProtos:   []string{"h2"},
		},
		MaxIdleConnsPerHost: 16,
	}
	backendURL := &url.URL{Scheme: "https", Host: backend}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(backendURL)
			r.Out.Host = r.In.Host
		},
		Transport:     upstream,
		FlushInterval: -1,
		ErrorLog:      log.New(io.Discard, "", 0),
	}
	srvTLS := &tls.Config{
		Certificates: certs,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2"},
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
	if clientCA != "" {
		srvTLS.ClientCAs = pool(clientCA)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{Handler: rp, TLSConfig: srvTLS}
	fmt.Printf("listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		srv.Close()
	}()
	if err := srv.Serve(tls.NewListener(ln, srvTLS)); err != nil && !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

type client struct {
	http *http.Client
	base string
}

func newClient(target, ca, name, cert, key string) *client {
	tr := &http.Transport{
		ForceAttemptHTTP2: true,
		TLSClientConfig: &tls.Config{
			Certificates: keyPair(cert, key),
			RootCAs:      pool(ca),
			ServerName:   name,
			NextProtos:   []string{"h2"},
		},
	}
	return &client{http: &http.Client{Transport: tr}, base: "https://" + target + "/pharos.test.v1.Echo/"}
}

// frame is one gRPC message: flag 0, big-endian length, body.
func frame(body []byte) []byte {
	out := make([]byte, 5+len(body))
	binary.BigEndian.PutUint32(out[1:5], uint32(len(body)))
	copy(out[5:], body)
	return out
}

// echoRequest encodes EchoRequest{text, blob} (fields 1 and 5).
func echoRequest(text string, blob []byte) []byte {
	var b bytes.Buffer
	b.WriteByte(0x0a)
	b.Write(binary.AppendUvarint(nil, uint64(len(text))))
	b.WriteString(text)
	if len(blob) > 0 {
		b.WriteByte(0x2a)
		b.Write(binary.AppendUvarint(nil, uint64(len(blob))))
		b.Write(blob)
	}
	return b.Bytes()
}

func (c *client) request(ctx context.Context, method string, body io.Reader) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", c.base+method, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	req.ContentLength = -1
	return req, nil
}

func status(res *http.Response) error {
	s := res.Trailer.Get("grpc-status")
	if s == "" {
		s = res.Header.Get("grpc-status")
	}
	if s == "8" || s == "14" { // RESOURCE_EXHAUSTED, UNAVAILABLE: a limit said no
		return fmt.Errorf("%w: grpc-status %s (%s)", errRefused, s, res.Trailer.Get("grpc-message"))
	}
	if s != "0" {
		return fmt.Errorf("grpc-status %q (%s), http %d", s, res.Trailer.Get("grpc-message"), res.StatusCode)
	}
	return nil
}

func (c *client) unaryOnce(msg []byte) error {
	req, err := c.request(context.Background(), "Unary", bytes.NewReader(msg))
	if err != nil {
		return err
	}
	res, err := c.http.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if err != nil {
		return err
	}
	return status(res)
}

// errRefused is a call the target refused by status (a rate limit), not a broken one.
var errRefused = errors.New("refused")

func unaryLoad(target, ca, name string, certs, keys []string, callers int, d time.Duration) (any, error) {
	msg := frame(echoRequest("x", nil))
	conns := make([]*client, callers)
	for i := range conns {
		conns[i] = newClient(target, ca, name, certs[i%len(certs)], keys[i%len(keys)])
		for j := 0; j < 10; j++ { // warm-up: TLS and HTTP/2 set up
			if err := conns[i].unaryOnce(msg); err != nil {
				return nil, err
			}
		}
	}
	var calls, refused atomic.Int64
	var firstErr atomic.Value
	measuring()
	start := time.Now()
	until := start.Add(d)
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func(c *client) {
			defer wg.Done()
			for time.Now().Before(until) {
				err := c.unaryOnce(msg)
				if errors.Is(err, errRefused) {
					refused.Add(1)
					continue
				}
				if err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				calls.Add(1)
			}
		}(conns[i])
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	if e, ok := firstErr.Load().(error); ok {
		return nil, e
	}
	n := calls.Load()
	return map[string]any{"calls": n, "refused": refused.Load(), "seconds": secs, "calls_per_s": float64(n) / secs}, nil
}

func (c *client) bidiLoad(messages, size int) (any, error) {
	if _, err := c.bidiOnce(20, size); err != nil { // warm-up
		return nil, err
	}
	measuring()
	start := time.Now()
	got, err := c.bidiOnce(messages, size)
	if err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	total := int64(messages*size) + got
	return map[string]any{"bytes": total, "seconds": secs, "mbps": float64(total) / 1e6 / secs}, nil
}

// measuring tells the driver that warm-up is over (it samples the proxy's
// CPU time from here to the result line).
func measuring() {
	fmt.Println("measuring")
}

// bidiOnce sends `messages` blobs on one Bidi call while reading the echoes;
// returns the blob bytes received.
func (c *client) bidiOnce(messages, size int) (int64, error) {
	blob := bytes.Repeat([]byte{7}, size)
	msg := frame(echoRequest("m", blob))
	pr, pw := io.Pipe()
	req, err := c.request(context.Background(), "Bidi", pr)
	if err != nil {
		return 0, err
	}
	go func() {
		for i := 0; i < messages; i++ {
			if _, err := pw.Write(msg); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		pw.Close()
	}()
	res, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	var got int64
	var n int
	hdr := make([]byte, 5)
	body := make([]byte, 0, size+64)
	for {
		if _, err := io.ReadFull(res.Body, hdr); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return 0, err
		}
		l := int(binary.BigEndian.Uint32(hdr[1:]))
		if cap(body) < l {
			body = make([]byte, 0, l)
		}
		if _, err := io.ReadFull(res.Body, body[:l]); err != nil {
			return 0, err
		}
		got += int64(size)
		n++
	}
	if err := status(res); err != nil {
		return 0, err
	}
	if n != messages {
		return 0, fmt.Errorf("bidi echoed %d of %d messages", n, messages)
	}
	return got, nil
}
