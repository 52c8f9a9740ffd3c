package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// BenchmarkImport measures 'hookhouse import' of a gzip'd NDJSON file of
// 500,000 records end to end: the check pass, the chunks over HTTP to the real
// admin API, and the durable appends to the real Pebble log (the warehouse load
// that follows is the loader's, measured by cmd/bench). make bench runs it once
// and reports records/s.
func BenchmarkImport(b *testing.B) {
	const n = 500_000
	st, _ := importServer(b)
	var total time.Duration
	// The heap of CLI and server together, sampled while the imports run:
	// it stays far below the file's 80 MB, as it would for a multi-GB file.
	var peak uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	for i := range b.N {
		b.StopTimer()
		path := filepath.Join(b.TempDir(), "bench.ndjson.gz")
		writeBenchFile(b, path, i*n, n)
		b.StartTimer()
		start := time.Now()
		var stdout, stderr bytes.Buffer
		if code := run(b.Context(), []string{"import", "1", path}, strings.NewReader(""), &stdout, &stderr); code != 0 {
			b.Fatalf("exit %d: %s", code, stderr.String())
		}
		total += time.Since(start)
	}
	close(stop)
	<-sampled
	if got := st.Head(1).Position; got != uint64(b.N*n) {
		b.Fatalf("log holds %d records, want %d", got, b.N*n)
	}
	b.ReportMetric(float64(b.N*n)/total.Seconds(), "records/s")
	b.ReportMetric(float64(peak)/(1<<20), "MiB-peak-heap")
}

// writeBenchFile writes n records of about 180 bytes, like a webhook event.
func writeBenchFile(b *testing.B, path string, from, n int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	zw, _ := gzip.NewWriterLevel(f, gzip.BestSpeed)
	w := bufio.NewWriterSize(zw, 1<<20)
	var line []byte
	for i := from + 1; i <= from+n; i++ {
		line = append(line[:0], `{"id":"evt_`...)
		line = strconv.AppendInt(line, int64(i), 10)
		line = append(line, `","type":"email.delivered","created_at":"2025-06-01T12:00:00Z","data":{"to":"user`...)
		line = strconv.AppendInt(line, int64(i%1000), 10)
		line = append(line, `@example.com","campaign":{"id":42,"name":"June newsletter"},"opened":false}}`+"\n"...)
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
}
