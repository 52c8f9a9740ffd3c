package client

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestImportChunk(t *testing.T) {
	var query, ctype, auth, body string
	answer, status := `{"records":2,"duplicate":false,"first_position":7}`, 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		query, ctype, auth, body = r.URL.Path+"?"+r.URL.RawQuery, r.Header.Get("Content-Type"), r.Header.Get("Authorization"), string(b)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		w.Write([]byte(answer))
	}))
	defer srv.Close()
	c := New(srv.URL, testKey)
	id := strings.Repeat("ab", 32)
	res, err := c.ImportChunk(context.Background(), 3, id, "created at", []byte("{\"n\":1}\n{\"n\":2}\n"))
	if err != nil || res.Records != 2 || res.Duplicate || res.FirstPosition != 7 {
		t.Fatalf("ImportChunk = %+v, %v", res, err)
	}
	if query != "/api/v1/integrations/3/import?chunk="+id+"&received_at=created+at" || ctype != "application/x-ndjson" ||
		auth != "Bearer "+testKey || body != "{\"n\":1}\n{\"n\":2}\n" {
		t.Errorf("request: %s %s %s %q", query, ctype, auth, body)
	}
	answer = `{"records":0,"duplicate":true}`
	if res, err := c.ImportChunk(context.Background(), 3, id, "", []byte("{}\n")); err != nil || !res.Duplicate {
		t.Fatalf("duplicate: %+v, %v", res, err)
	}
	if strings.Contains(query, "received_at") {
		t.Errorf("no field, but the query is %s", query)
	}
	answer, status = `{"error":{"code":"invalid","message":"line 2 of the chunk: invalid JSON"}}`, 400
	_, err = c.ImportChunk(context.Background(), 3, id, "", []byte("{}\n{\n"))
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Message != "line 2 of the chunk: invalid JSON" {
		t.Errorf("refusal: %v", err)
	}
	// An answer that stores nothing and is no duplicate is not a hookhouse answer.
	answer, status = `{}`, 200
	if _, err := c.ImportChunk(context.Background(), 3, id, "", []byte("{}\n")); err == nil {
		t.Error("an empty answer to a chunk with records: no error")
	}
}
