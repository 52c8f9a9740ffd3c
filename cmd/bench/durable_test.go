package main

import (
	"bytes"
	"database/sql"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/hookhouse/hookhouse/internal/warehouse/duckdb"
)

// TestDurableFloors: every durable floor answers 200 only for JSON, and what it
// answered 200 for is in its log file (and, with loading, in DuckDB once).
func TestDurableFloors(t *testing.T) {
	_, bodies, err := loadVero("")
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 25
	for _, d := range durableFloors {
		t.Run(d.mode, func(t *testing.T) {
			dir := t.TempDir()
			f, err := startDurableFloor(dir, d.mode)
			if err != nil {
				t.Fatal(err)
			}
			closed := false
			defer func() {
				if !closed {
					f.close()
				}
			}()
			post := func(body []byte) (int, string) {
				resp, err := http.Post(f.url(), "application/json", bytes.NewReader(body))
				if err != nil {
					t.Error(err)
					return 0, ""
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return resp.StatusCode, string(b)
			}
			if code, msg := post([]byte(`{"not json`)); code != http.StatusBadRequest || !strings.Contains(msg, "not JSON") {
				t.Errorf("bad JSON: %d %q, want 400 saying so", code, msg)
			}
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range each {
						if code, msg := post(bodies[(w*each+i)%len(bodies)]); code != http.StatusOK {
							t.Errorf("POST: %d %q", code, msg)
						}
					}
				}()
			}
			wg.Wait()
			f.close()
			closed = true

			log, err := os.ReadFile(filepath.Join(dir, "floor.log"))
			if err != nil {
				t.Fatal(err)
			}
			for i, b := range bodies {
				want := 0
				for n := range workers * each {
					if n%len(bodies) == i {
						want++
					}
				}
				if got := bytes.Count(log, append(append([]byte{}, b...), '\n')); got != want {
					t.Errorf("body %d is %d times in the log, want %d", i, got, want)
				}
			}
			if d.mode == floorDurable {
				if _, err := os.Stat(filepath.Join(dir, "floor.duckdb")); !os.IsNotExist(err) {
					t.Errorf("the durable floor without loading made a DuckDB file (%v)", err)
				}
				return
			}
			db, err := sql.Open("duckdb", duckdb.DSN(filepath.Join(dir, "floor.duckdb")))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var rows, seqs int
			seqCol := "seq"
			if d.mode == floorRows {
				seqCol = "_sdc_sequence"
			}
			if err := db.QueryRow("SELECT count(*), count(DISTINCT "+seqCol+") FROM floor").Scan(&rows, &seqs); err != nil {
				t.Fatal(err)
			}
			if rows != workers*each || seqs != rows {
				t.Errorf("DuckDB has %d rows with %d distinct sequences, want %d once each", rows, seqs, workers*each)
			}
			if d.mode != floorRows {
				return
			}
			// The rows have the records' values in typed columns.
			var cols, sent int
			if err := db.QueryRow("SELECT count(*) FROM information_schema.columns WHERE table_name = 'floor'").Scan(&cols); err != nil {
				t.Fatal(err)
			}
			if cols < 40 {
				t.Errorf("the Vero-shaped table has %d columns, want the _sdc_ ones and one per leaf (40 or more)", cols)
			}
			if err := db.QueryRow(`SELECT count(*) FROM floor WHERE type__varchar = 'sent' AND campaign__id__bigint = 4411`).Scan(&sent); err != nil {
				t.Fatal(err)
			}
			if sent == 0 {
				t.Error("no row of the sent sample with campaign__id__bigint = 4411")
			}
		})
	}
}
