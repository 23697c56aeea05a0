// Command habits checks, in its image, what ordinary Go programs expect:
// it reads its kodata file and a config file, loads a time zone, resolves
// its user and writes a temp file, printing one "ok NAME: …" line per
// check, and exits 1 if any fails. With -health it only exits 0.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	health := flag.Bool("health", false, "exit 0 (the image's health check)")
	flag.Parse()
	if *health {
		fmt.Println("healthy")
		return
	}
	failed := false
	check := func(name string, f func() (string, error)) {
		s, err := f()
		if err != nil {
			failed = true
			fmt.Printf("FAIL %s: %v\n", name, err)
			return
		}
		fmt.Printf("ok %s: %s\n", name, s)
	}
	check("kodata", func() (string, error) {
		b, err := os.ReadFile(filepath.Join(os.Getenv("KO_DATA_PATH"), "greeting.txt"))
		return strings.TrimSpace(string(b)), err
	})
	check("files", func() (string, error) {
		b, err := os.ReadFile("/etc/habits/habits.conf")
		return strings.TrimSpace(string(b)), err
	})
	check("zone", func() (string, error) {
		loc, err := time.LoadLocation("Europe/Berlin")
		if err != nil {
			return "", err
		}
		name, off := time.Date(2026, 7, 1, 12, 0, 0, 0, loc).Zone()
		return fmt.Sprintf("%s %s %d", loc, name, off), nil
	})
	check("user", func() (string, error) {
		u, err := user.Current()
		if err != nil {
			return "", err
		}
		g, err := user.LookupGroupId(u.Gid)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%s %s %s %s", u.Username, u.Uid, g.Name, u.HomeDir), nil
	})
	check("tmp", func() (string, error) {
		f, err := os.CreateTemp("", "habits-*")
		if err != nil {
			return "", err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if _, err := f.WriteString("x"); err != nil {
			return "", err
		}
		return filepath.Dir(f.Name()), nil
	})
	if failed {
		os.Exit(1)
	}
}
