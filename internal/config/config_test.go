package config

import (
	"io"
	"strings"
	"testing"
)

// The secrets below all contain "s3cr3t" so one check covers every form.
func TestRedactDSN(t *testing.T) {
	tests := []struct{ in, want string }{
		// URL form: userinfo, query parameters, both, percent-encoding, order kept.
		{"postgres://hh:s3cr3t@db.example.com:5432/wh", "postgres://hh:xxxxx@db.example.com:5432/wh"},
		{"postgres://hh@db:5432/wh?sslmode=require", "postgres://hh@db:5432/wh?sslmode=require"},
		{"postgres://hh@db/wh?password=s3cr3t", "postgres://hh@db/wh?password=xxxxx"},
		{"postgres://hh@db/wh?sslmode=verify-full&password=s3cr3t&connect_timeout=5",
			"postgres://hh@db/wh?sslmode=verify-full&password=xxxxx&connect_timeout=5"},
		{"postgresql://hh:s3cr3t@db/wh?sslpassword=s3cr3t&sslkey=/etc/hh/client.key",
			"postgresql://hh:xxxxx@db/wh?sslpassword=xxxxx&sslkey=/etc/hh/client.key"},
		{"postgres://hh@db/wh?PassWord=s3cr3t", "postgres://hh@db/wh?PassWord=xxxxx"},
		{"postgres://hh@db/wh?pass%77ord=s3cr3t", "postgres://hh@db/wh?pass%77ord=xxxxx"},     // an encoded key
		{"postgres://hh@db/wh?password=s3%63r3t%26x", "postgres://hh@db/wh?password=xxxxx"},   // an encoded value
		{"postgres://hh@db/wh?%zz=s3cr3t", "postgres://hh@db/wh?%zz=xxxxx"},                   // a key we cannot read
		{"postgres://hh:s3%40cr3t@db/wh", "postgres://hh:xxxxx@db/wh"},                        // an encoded @
		{"postgres://hh:s3cr3t@h1:5432,h2:5433/wh", "postgres://hh:xxxxx@h1:5432,h2:5433/wh"}, // several hosts
		{"postgres://hh@db/wh#s3cr3t", "postgres://hh@db/wh"},
		{"POSTGRES://hh:s3cr3t@db/wh", "postgres://hh:xxxxx@db/wh"},
		{"postgres://hh:s3cr3t@db:port/wh", "(unparsable URL)"},
		{"postgres://hh:s3%zzcr3t@db/wh", "(unparsable URL)"},
		{"  postgres://hh:s3cr3t@db/wh  ", "postgres://hh:xxxxx@db/wh"},

		// key=value form: bare and quoted values, escapes, spaces around '='.
		{"host=db user=hh password=s3cr3t dbname=wh", "host=db user=hh password=xxxxx dbname=wh"},
		{"host=db password='s3cr3t with spaces' dbname=wh", "host=db password=xxxxx dbname=wh"},
		{`host=db password='it\'s s3cr3t' dbname=wh`, "host=db password=xxxxx dbname=wh"},
		{`host=db password=s3cr3t\ more dbname=wh`, "host=db password=xxxxx dbname=wh"},
		{"host = db\tpassword = s3cr3t  sslpassword='s3cr3t' sslkey=/k", "host=db password=xxxxx sslpassword=xxxxx sslkey=/k"},
		{"host=db user=hh", "host=db user=hh"},
		{"host=db password='s3cr3t", "(unparsable DSN)"}, // unterminated quote
		{"s3cr3t", "(unparsable DSN)"},
		{"host=db s3cr3t", "(unparsable DSN)"},
		{"", "(unparsable DSN)"},
	}
	for _, tc := range tests {
		got := RedactDSN(tc.in)
		if got != tc.want {
			t.Errorf("RedactDSN(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if strings.Contains(got, "s3cr3t") || strings.Contains(got, "s3%63r3t") {
			t.Errorf("RedactDSN(%q) = %q leaks the secret", tc.in, got)
		}
	}
}

func TestStringHidesPasswords(t *testing.T) {
	env := map[string]string{"HOOKHOUSE_QUERY_DSN": "postgres://reader:s3cr3t@db/wh?sslpassword=s3cr3t"}
	c, err := Parse([]string{"--warehouse", "postgres://hh:s3cr3t@db/wh?password=s3cr3t"},
		func(k string) string { return env[k] }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.QueryDSN != env["HOOKHOUSE_QUERY_DSN"] {
		t.Errorf("QueryDSN = %q from the env twin", c.QueryDSN)
	}
	s := c.String()
	if strings.Contains(s, "s3cr3t") {
		t.Errorf("String() leaks a password: %s", s)
	}
	for _, want := range []string{"postgres://hh:xxxxx@db/wh?password=xxxxx", "query-dsn=postgres://reader:xxxxx@db/wh?sslpassword=xxxxx"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() = %s, want it to contain %s", s, want)
		}
	}
}

func TestQueryDSNValidation(t *testing.T) {
	tests := []struct {
		args []string
		err  string // "" = valid
	}{
		{[]string{"--warehouse", "postgres://hh@db/wh", "--query-dsn", "postgres://reader@db/wh"}, ""},
		{[]string{"--query-dsn", "postgres://reader@db/wh"}, "--query-dsn needs a PostgreSQL --warehouse"},
		{[]string{"--warehouse", "postgres://hh@db/wh", "--query-dsn", "user=reader password=s3cr3t"}, "--query-dsn must be a postgres:// URL"},
	}
	for _, tc := range tests {
		_, err := Parse(tc.args, func(string) string { return "" }, io.Discard)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("Parse(%q): %v", tc.args, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.args, err, tc.err)
		}
		if err != nil && strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("Parse(%q) error leaks the password: %v", tc.args, err)
		}
	}
}
