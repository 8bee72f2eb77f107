// Command yamuxpeer is a test peer for core/mux: one github.com/hashicorp/yamux
// session over TCP on 127.0.0.1, driven by line commands on stdin.
//
// Session mode:
//
//	yamuxpeer -role client|server (-listen | -dial 127.0.0.1:PORT)
//	          [-window BYTES] [-close-timeout-ms MS]
//
// With -listen it prints "listening PORT" and takes one connection. Once the
// session exists it prints "ready". Each stdin line is "ID VERB ARGS..."; it
// is answered by zero or more "ID ev TEXT" lines and then exactly one
// "ID ok [TEXT]" or "ID err TEXT". Commands run concurrently. stdin EOF or
// "ID quit" closes the session and exits.
//
// Verbs:
//
//	open KIND COUNT SIZE SEED [OPTION...]  open COUNT streams at once; options:
//	                                       fin-event: report "ev fin ID" after each FIN
//	                                       fin-after=GATE: send the FIN only once
//	                                       "release GATE" came
//	serve COUNT                            accept and serve COUNT streams
//	release GATE                           let "hold" streams named GATE go on
//	ping                                   ok RTT_MICROSECONDS
//	goaway                                 send go-away
//	streams                                ok NUMBER_OF_OPEN_STREAMS
//
// Every stream starts with a line from its opener, "KIND SIZE SEED [GATE]",
// and the acceptor serves it by KIND:
//
//	echo    copies SIZE bytes back while checking them, then closes
//	sink    checks SIZE bytes up to the opener's FIN, answers "SIZE SHA256HEX\n"
//	source  waits for the opener's FIN, sends SIZE bytes, closes
//	hold    waits for the opener's FIN, sends SIZE bytes, reports "ev held GATE",
//	        waits for "release GATE", sends SIZE more bytes, closes
//	watch   reports "ev watching ID", reads until the stream is reset, then
//	        reports "ev reset ID"
//
// Stream bytes are seededBytes(SEED + index, n) (xorshift32, the same as
// tests/unit/mux_helpers.ts); the opener of stream i uses SEED + i.
//
// Bench mode: yamuxpeer -bench -streams N -ms MS runs a yamux client and
// server in this process over loopback TCP; the client writes 64 KiB chunks
// on N streams for MS milliseconds and the line printed is JSON
// {"bytes":B,"ms":T,"mbps":R} (MB = 10^6 bytes, bytes counted by the reader).
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

// out serialises lines on stdout.
var out = struct {
	sync.Mutex
	w *bufio.Writer
}{w: bufio.NewWriter(os.Stdout)}

func say(format string, args ...any) {
	out.Lock()
	defer out.Unlock()
	fmt.Fprintf(out.w, format+"\n", args...)
	out.w.Flush()
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "yamuxpeer: "+format+"\n", args...)
	os.Exit(2)
}

// pattern produces seededBytes(seed, …) incrementally.
type pattern struct{ x uint32 }

func newPattern(seed uint32) *pattern {
	x := seed * 2654435761
	if x == 0 {
		x = 1
	}
	return &pattern{x: x}
}

func (p *pattern) fill(b []byte) {
	x := p.x
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	p.x = x
}

// writePattern writes n pattern bytes in chunks.
func writePattern(w io.Writer, p *pattern, n int) error {
	buf := make([]byte, 64*1024)
	for n > 0 {
		k := min(n, len(buf))
		p.fill(buf[:k])
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// readPattern reads exactly until EOF and checks the bytes are the pattern
// and exactly n long; each good chunk is passed to also (may be nil).
func readPattern(r io.Reader, p *pattern, n int, also func([]byte) error) error {
	buf := make([]byte, 64*1024)
	want := make([]byte, len(buf))
	got := 0
	for {
		k, err := r.Read(buf)
		if k > 0 {
			if got+k > n {
				return fmt.Errorf("received more than %d bytes", n)
			}
			p.fill(want[:k])
			if !bytes.Equal(buf[:k], want[:k]) {
				return fmt.Errorf("bytes differ in %d..%d", got, got+k)
			}
			got += k
			if also != nil {
				if err := also(buf[:k]); err != nil {
					return err
				}
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("after %d bytes: %w", got, err)
		}
	}
	if got != n {
		return fmt.Errorf("received %d bytes, want %d", got, n)
	}
	return nil
}

func readLine(r io.Reader) (string, error) {
	var line []byte
	one := make([]byte, 1)
	for len(line) < 256 {
		if _, err := io.ReadFull(r, one); err != nil {
			return "", fmt.Errorf("reading the stream's first line: %w", err)
		}
		if one[0] == '\n' {
			return string(line), nil
		}
		line = append(line, one[0])
	}
	return "", errors.New("stream line too long")
}

func drainToEOF(r io.Reader) error {
	n, err := io.Copy(io.Discard, r)
	if err != nil {
		return err
	}
	if n != 0 {
		return fmt.Errorf("%d unexpected bytes before FIN", n)
	}
	return nil
}

type peer struct {
	session  *yamux.Session
	gatesMu  sync.Mutex
	gates    map[string]chan struct{}
	released map[string]bool
}

func (p *peer) gate(name string) chan struct{} {
	p.gatesMu.Lock()
	defer p.gatesMu.Unlock()
	g, ok := p.gates[name]
	if !ok {
		g = make(chan struct{})
		p.gates[name] = g
	}
	return g
}

func (p *peer) release(name string) {
	g := p.gate(name)
	p.gatesMu.Lock()
	defer p.gatesMu.Unlock()
	if !p.released[name] {
		p.released[name] = true
		close(g)
	}
}

// header is the first line of a stream.
type header struct {
	kind string
	size int
	seed uint32
	gate string
}

func parseHeader(line string) (header, error) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return header{}, fmt.Errorf("bad stream line %q", line)
	}
	size, err1 := strconv.Atoi(f[1])
	seed, err2 := strconv.ParseUint(f[2], 10, 32)
	if err1 != nil || err2 != nil || size < 0 {
		return header{}, fmt.Errorf("bad stream line %q", line)
	}
	h := header{kind: f[0], size: size, seed: uint32(seed)}
	if len(f) > 3 {
		h.gate = f[3]
	}
	return h, nil
}

// serveStream is the acceptor's side of one stream.
func (p *peer) serveStream(id string, s *yamux.Stream) error {
	defer s.Close()
	line, err := readLine(s)
	if err != nil {
		return err
	}
	h, err := parseHeader(line)
	if err != nil {
		return err
	}
	switch h.kind {
	case "echo":
		err = readPattern(s, newPattern(h.seed), h.size, func(b []byte) error {
			_, err := s.Write(b)
			return err
		})
	case "sink":
		sum := sha256.New()
		err = readPattern(s, newPattern(h.seed), h.size, func(b []byte) error {
			sum.Write(b)
			return nil
		})
		if err == nil {
			_, err = fmt.Fprintf(s, "%d %s\n", h.size, hex.EncodeToString(sum.Sum(nil)))
		}
	case "source":
		if err = drainToEOF(s); err == nil {
			err = writePattern(s, newPattern(h.seed), h.size)
		}
	case "hold":
		if err = drainToEOF(s); err != nil {
			return err
		}
		pat := newPattern(h.seed)
		if err = writePattern(s, pat, h.size); err != nil {
			return err
		}
		say("%s ev held %s", id, h.gate)
		select {
		case <-p.gate(h.gate):
		case <-p.session.CloseChan():
			return errors.New("session closed while held")
		}
		err = writePattern(s, pat, h.size)
	case "watch":
		say("%s ev watching %d", id, s.StreamID())
		_, err = io.Copy(io.Discard, s)
		if errors.Is(err, yamux.ErrConnectionReset) {
			say("%s ev reset %d", id, s.StreamID())
			return nil
		}
		return fmt.Errorf("stream %d ended without reset: %v", s.StreamID(), err)
	default:
		return fmt.Errorf("unknown stream kind %q", h.kind)
	}
	if err != nil {
		return fmt.Errorf("%s stream %d: %w", h.kind, s.StreamID(), err)
	}
	return nil
}

// openOptions are the options of the open verb.
type openOptions struct {
	finEvent bool   // report "ev fin ID" once the FIN is sent
	finGate  string // if set, the FIN waits for "release finGate"
}

func parseOpenOptions(args []string) (openOptions, error) {
	var o openOptions
	for _, a := range args {
		switch {
		case a == "fin-event":
			o.finEvent = true
		case strings.HasPrefix(a, "fin-after=") && len(a) > len("fin-after="):
			o.finGate = strings.TrimPrefix(a, "fin-after=")
		default:
			return o, fmt.Errorf("open: unknown option %q", a)
		}
	}
	return o, nil
}

// openStream is the opener's side of one stream.
func (p *peer) openStream(id string, h header, o openOptions) error {
	s, err := p.session.OpenStream()
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer s.Close()
	if _, err := fmt.Fprintf(s, "%s %d %d\n", h.kind, h.size, h.seed); err != nil {
		return err
	}
	closeWrite := func() error {
		if o.finGate != "" {
			select {
			case <-p.gate(o.finGate):
			case <-p.session.CloseChan():
				return errors.New("session closed before the FIN gate opened")
			}
		}
		if err := s.Close(); err != nil { // FIN (half-close in v0.1.2)
			return err
		}
		if o.finEvent {
			say("%s ev fin %d", id, s.StreamID())
		}
		return nil
	}
	switch h.kind {
	case "echo":
		wrote := make(chan error, 1)
		go func() {
			err := writePattern(s, newPattern(h.seed), h.size)
			if err == nil {
				err = closeWrite()
			}
			wrote <- err
		}()
		err = readPattern(s, newPattern(h.seed), h.size, nil)
		if werr := <-wrote; err == nil {
			err = werr
		}
	case "sink":
		sum := sha256.New()
		pat := newPattern(h.seed)
		if err = writePattern(io.MultiWriter(s, sum), pat, h.size); err != nil {
			break
		}
		if err = closeWrite(); err != nil {
			break
		}
		var line string
		if line, err = readLine(s); err != nil {
			break
		}
		want := fmt.Sprintf("%d %s", h.size, hex.EncodeToString(sum.Sum(nil)))
		if line != want {
			err = fmt.Errorf("sink answered %q, want %q", line, want)
		} else {
			err = drainToEOF(s)
		}
	case "source":
		if err = closeWrite(); err == nil {
			err = readPattern(s, newPattern(h.seed), h.size, nil)
		}
	default:
		err = fmt.Errorf("cannot open streams of kind %q", h.kind)
	}
	if err != nil {
		return fmt.Errorf("%s stream %d: %w", h.kind, s.StreamID(), err)
	}
	return nil
}

// all runs n jobs at once (released together) and returns the first error.
func all(n int, job func(i int) error) error {
	start := make(chan struct{})
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			<-start
			errs <- job(i)
		}(i)
	}
	close(start)
	var first error
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (p *peer) command(id, verb string, args []string) (string, error) {
	num := func(i int) (int, error) {
		if i >= len(args) {
			return 0, fmt.Errorf("%s: missing argument %d", verb, i+1)
		}
		return strconv.Atoi(args[i])
	}
	switch verb {
	case "open":
		count, err := num(1)
		if err != nil {
			return "", err
		}
		size, err := num(2)
		if err != nil {
			return "", err
		}
		seed, err := num(3)
		if err != nil {
			return "", err
		}
		opts, err := parseOpenOptions(args[4:])
		if err != nil {
			return "", err
		}
		err = all(count, func(i int) error {
			return p.openStream(id, header{kind: args[0], size: size, seed: uint32(seed + i)}, opts)
		})
		return strconv.Itoa(count), err
	case "serve":
		count, err := num(0)
		if err != nil {
			return "", err
		}
		streams := make([]*yamux.Stream, 0, count)
		errs := make(chan error, count)
		for len(streams) < count {
			s, err := p.session.AcceptStream()
			if err != nil {
				return "", fmt.Errorf("accept: %w", err)
			}
			streams = append(streams, s)
			go func() { errs <- p.serveStream(id, s) }()
		}
		var first error
		for range streams {
			if err := <-errs; err != nil && first == nil {
				first = err
			}
		}
		return strconv.Itoa(count), first
	case "release":
		if len(args) != 1 {
			return "", errors.New("release: name one gate")
		}
		p.release(args[0])
		return "", nil
	case "ping":
		rtt, err := p.session.Ping()
		return strconv.FormatInt(rtt.Microseconds(), 10), err
	case "goaway":
		return "", p.session.GoAway()
	case "streams":
		return strconv.Itoa(p.session.NumStreams()), nil
	default:
		return "", fmt.Errorf("unknown command %q", verb)
	}
}

func runSession(role string, conn net.Conn, window uint32, closeTimeout time.Duration) {
	cfg := yamux.DefaultConfig()
	cfg.LogOutput = os.Stderr
	cfg.EnableKeepAlive = false
	if window > 0 {
		cfg.MaxStreamWindowSize = window
	}
	if closeTimeout > 0 {
		cfg.StreamCloseTimeout = closeTimeout
	}
	var s *yamux.Session
	var err error
	if role == "client" {
		s, err = yamux.Client(conn, cfg)
	} else {
		s, err = yamux.Server(conn, cfg)
	}
	if err != nil {
		fatal("yamux: %v", err)
	}
	p := &peer{session: s, gates: map[string]chan struct{}{}, released: map[string]bool{}}
	say("ready")
	in := bufio.NewScanner(os.Stdin)
	var running sync.WaitGroup
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) < 2 {
			continue
		}
		id, verb := f[0], f[1]
		if verb == "quit" {
			break
		}
		running.Add(1)
		go func() {
			defer running.Done()
			text, err := p.command(id, verb, f[2:])
			if err != nil {
				say("%s err %s", id, strings.ReplaceAll(err.Error(), "\n", " "))
			} else {
				say("%s ok %s", id, text)
			}
		}()
	}
	s.Close()
	conn.Close()
	running.Wait()
}

func bench(streams int, d time.Duration) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fatal("listen: %v", err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			fatal("accept: %v", err)
		}
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		fatal("dial: %v", err)
	}
	sc := <-accepted
	ln.Close()
	cfg := yamux.DefaultConfig()
	cfg.EnableKeepAlive = false
	cfg.LogOutput = io.Discard
	client, _ := yamux.Client(cc, cfg)
	server, _ := yamux.Server(sc, cfg)
	var received int64
	var mu sync.Mutex
	readers := make(chan error, streams)
	go func() {
		for i := 0; i < streams; i++ {
			s, err := server.AcceptStream()
			if err != nil {
				readers <- err
				continue
			}
			go func() {
				n, err := io.Copy(io.Discard, s)
				mu.Lock()
				received += n
				mu.Unlock()
				readers <- err
			}()
		}
	}()
	started := time.Now()
	deadline := started.Add(d)
	buf := bytes.Repeat([]byte{0x5a}, 64*1024)
	err = all(streams, func(int) error {
		s, err := client.OpenStream()
		if err != nil {
			return err
		}
		for time.Now().Before(deadline) {
			if _, err := s.Write(buf); err != nil {
				return err
			}
		}
		return s.Close()
	})
	if err != nil {
		fatal("bench write: %v", err)
	}
	for i := 0; i < streams; i++ {
		if err := <-readers; err != nil {
			fatal("bench read: %v", err)
		}
	}
	ms := float64(time.Since(started).Microseconds()) / 1000
	client.Close()
	server.Close()
	say(`{"bytes":%d,"ms":%.3f,"mbps":%.3f}`, received, ms, float64(received)/1e6/(ms/1000))
}

func main() {
	role := flag.String("role", "client", "yamux role: client or server")
	listen := flag.Bool("listen", false, "listen on 127.0.0.1 (port printed) for one connection")
	dial := flag.String("dial", "", "dial this 127.0.0.1:PORT")
	window := flag.Uint("window", 0, "MaxStreamWindowSize in bytes (0: the 256 KiB default)")
	closeTimeoutMs := flag.Int("close-timeout-ms", 0, "StreamCloseTimeout in ms (0: default)")
	benchMode := flag.Bool("bench", false, "bench mode: client and server in this process")
	streams := flag.Int("streams", 1, "bench: streams")
	benchMs := flag.Int("ms", 1000, "bench: how long the writers write, ms")
	flag.Parse()

	if *benchMode {
		bench(*streams, time.Duration(*benchMs)*time.Millisecond)
		return
	}
	if *role != "client" && *role != "server" {
		fatal("-role must be client or server")
	}
	var conn net.Conn
	switch {
	case *listen:
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fatal("listen: %v", err)
		}
		say("listening %d", ln.Addr().(*net.TCPAddr).Port)
		conn, err = ln.Accept()
		ln.Close()
		if err != nil {
			fatal("accept: %v", err)
		}
	case *dial != "":
		host, _, err := net.SplitHostPort(*dial)
		if err != nil || host != "127.0.0.1" {
			fatal("-dial must be 127.0.0.1:PORT")
		}
		conn, err = net.Dial("tcp", *dial)
		if err != nil {
			fatal("dial: %v", err)
		}
	default:
		fatal("give -listen or -dial (or -bench)")
	}
	runSession(*role, conn, uint32(*window), time.Duration(*closeTimeoutMs)*time.Millisecond)
}
