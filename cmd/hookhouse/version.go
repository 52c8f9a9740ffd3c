package main

import (
	"context"
	"flag"
	"fmt"
	"runtime/debug"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

func printVersion(ctx context.Context, c *cli, fs *flag.FlagSet, args []string) error {
	if _, err := c.parseArgs(fs, args); err != nil {
		return err
	}
	v := buildVersion()
	if c.json {
		return c.printJSON(struct {
			Version string `json:"version"`
		}{v})
	}
	fmt.Fprintf(c.stdout, "hookhouse %s\n", v)
	return nil
}

// buildVersion is the version set at build time or else what the Go toolchain recorded:
// the module version of "go install …@v1.2.3", or the VCS revision of a local build.
func buildVersion() string {
	if version != "dev" {
		return version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return version
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "-dirty"
			}
		}
	}
	if rev == "" {
		return version
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	return version + "+" + rev + modified
}
