package trivy

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipway-build/slipway/internal/testutil"
	"github.com/slipway-build/slipway/scan"
)

const serverToken = "s3cr3t-token-for-the-test"

// serverIndex holds what both modes must judge alike: Debian packages on
// two platforms and a Go binary with a vulnerable module.
func serverIndex(t testing.TB) v1.ImageIndex {
	bin := goBinary(t, "vulnapp")
	return index(t,
		image(t, amd64, layer(t, debianFiles("amd64", vulnerableDebianPkgs)...), layer(t, file{name: "app/server", mode: 0o755, data: bin})),
		image(t, arm64, layer(t, debianFiles("arm64", vulnerableDebianPkgs)...)))
}

func startTrivyServer(t *testing.T, dbDir, token string) *testutil.TrivyServer {
	t.Helper()
	return testutil.StartTrivyServer(t, testutil.Peer(t, "trivy"), dbDir, token, "")
}

// reportCmp compares reports without their times and Trivy's own report.
var reportCmp = []cmp.Option{cmpopts.IgnoreFields(scan.Report{}, "StartedAt", "FinishedAt", "TrivyReport", "MakeSBOM")}

func TestServerModeEqualsLocal(t *testing.T) {
	if testing.Short() {
		t.Skip("starts trivy server")
	}
	db := fixtureDB(t, now.Add(-time.Hour))
	srv := startTrivyServer(t, db, serverToken)
	idx := serverIndex(t)
	ctx := context.Background()

	local, err := newScanner(t, db).Scan(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	if len(local.Findings) < 3 {
		t.Fatalf("local findings %+v: the image should have Debian and Go findings", local.Findings)
	}
	// No local DB at all: everything the report says of the DB is the server's.
	remote := newScanner(t, t.TempDir()+"/nodb", WithServer(ServerConfig{URL: srv.URL, Token: serverToken}))
	got, err := remote.Scan(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(local, got, reportCmp...); d != "" {
		t.Errorf("server report differs from the local one (-local +server):\n%s", d)
	}
	// A second scan finds the analysis in the server's cache and answers the same.
	again, err := remote.Scan(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(local, again, reportCmp...); d != "" {
		t.Errorf("second server report differs (-local +server):\n%s", d)
	}
	if scan.Gate(local, scan.Policy{}) == nil || scan.Gate(got, scan.Policy{}) == nil {
		t.Error("the gate should fail on both reports (HIGH findings)")
	}
	id, err := remote.DBIdentity()
	if err != nil || !strings.Contains(id, "server "+srv.URL) || strings.Contains(id, serverToken) {
		t.Errorf("DBIdentity = %q, %v", id, err)
	}
}

func TestServerDBFromServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts trivy server")
	}
	updated := now.Add(-3 * time.Hour)
	db := fixtureDB(t, updated)
	srv := startTrivyServer(t, db, "")
	// A local DB of another age: the server's must be the one reported.
	localDB := fixtureDB(t, now.Add(-time.Minute))
	s := newScanner(t, localDB, WithServer(ServerConfig{URL: srv.URL}))
	st, err := s.CheckDB()
	if err != nil {
		t.Fatal(err)
	}
	if !st.UpdatedAt.Equal(updated) || st.SchemaVersion != 2 || st.Age != 3*time.Hour {
		t.Errorf("CheckDB = %+v, want the server's DB (updated %s)", st, updated)
	}
	r, err := s.Scan(context.Background(), serverIndex(t))
	if err != nil {
		t.Fatal(err)
	}
	if !r.DB.UpdatedAt.Equal(updated) {
		t.Errorf("report DB %+v, want the server's (updated %s)", r.DB, updated)
	}
	// The stale-DB policy applies to the server's DB.
	stale := newScanner(t, localDB, WithServer(ServerConfig{URL: srv.URL}), WithMaxAge(2*time.Hour))
	var dbe *DBError
	if _, err := stale.Scan(context.Background(), serverIndex(t)); !errors.As(err, &dbe) || dbe.Problem != DBStale || dbe.Dir != srv.URL {
		t.Errorf("scan with a stale server DB: %v, want a stale *DBError naming the server", err)
	}
	if _, err := stale.CheckDB(); !errors.As(err, &dbe) || dbe.Problem != DBStale {
		t.Errorf("CheckDB with a stale server DB: %v", err)
	}
}

func TestServerWrongToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts trivy server")
	}
	db := fixtureDB(t, now.Add(-time.Hour))
	srv := startTrivyServer(t, db, serverToken)
	for name, tok := range map[string]string{"wrong": "not-the-token", "none": ""} {
		s := newScanner(t, db, WithServer(ServerConfig{URL: srv.URL, Token: tok}))
		_, err := s.Scan(context.Background(), serverIndex(t))
		var se *ServerError
		if !errors.As(err, &se) {
			t.Errorf("%s token: err = %v, want *ServerError", name, err)
			continue
		}
		if tok != "" && strings.Contains(err.Error(), tok) {
			t.Errorf("%s token: the error shows the token: %v", name, err)
		}
	}
	// The token in another header than the server reads is no token.
	s := newScanner(t, db, WithServer(ServerConfig{URL: srv.URL, Token: serverToken, TokenHeader: "X-Other"}))
	if _, err := s.Scan(context.Background(), serverIndex(t)); err == nil || strings.Contains(err.Error(), serverToken) {
		t.Errorf("token in another header: err = %v", err)
	}
	// Custom headers are sent: the token can travel as one.
	s = newScanner(t, db, WithServer(ServerConfig{URL: srv.URL, Headers: map[string]string{"Trivy-Token": serverToken}}))
	if _, err := s.Scan(context.Background(), serverIndex(t)); err != nil {
		t.Errorf("token as a custom header: %v", err)
	}
}

func TestServerDown(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	url := "http://127.0.0.1:" + strconv.Itoa(testutil.FreePort(t))
	s := newScanner(t, db, WithServer(ServerConfig{URL: url, Timeout: 5 * time.Second}))
	t0 := time.Now()
	_, err := s.Scan(context.Background(), debianIndex(t))
	var se *ServerError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *ServerError", err)
	}
	if d := time.Since(t0); d > 10*time.Second {
		t.Errorf("failing took %s", d)
	}
	if _, err := s.CheckDB(); !errors.As(err, &se) {
		t.Errorf("CheckDB: %v, want *ServerError", err)
	}
}

// versionJSON is what a trivy server's /version says of a fresh DB.
func versionJSON() string {
	return `{"Version":"0.74.0","VulnerabilityDB":{"Version":2,"NextUpdate":"2026-03-02T00:00:00Z","UpdatedAt":"` +
		now.Add(-time.Hour).Format(time.RFC3339) + `","DownloadedAt":"2026-03-01T11:00:00Z"}}`
}

func TestServerGarbage(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	cases := map[string]http.HandlerFunc{
		"version not JSON": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte("<html>hello</html>"))
		},
		"version without a DB": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"Version":"0.74.0"}`))
		},
		"version of another schema": func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"VulnerabilityDB":{"Version":1,"UpdatedAt":"2026-03-01T11:00:00Z"}}`))
		},
		"rpc answers HTML": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/version" {
				w.Write([]byte(versionJSON()))
				return
			}
			w.Header().Set("Content-Type", "text/html")
			w.Write([]byte("<html>proxy login</html>"))
		},
		"rpc answers random protobuf bytes": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/version" {
				w.Write([]byte(versionJSON()))
				return
			}
			w.Header().Set("Content-Type", "application/protobuf")
			w.Write([]byte{0xff, 0xfe, 0x01, 0x02, 0x03})
		},
		// A well-formed but empty answer to everything: nothing missing,
		// nothing found. It must not pass as "no vulnerabilities".
		"rpc answers empty messages": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/version" {
				w.Write([]byte(versionJSON()))
				return
			}
			w.Header().Set("Content-Type", "application/protobuf")
		},
		"rpc answers 500": func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/version" {
				w.Write([]byte(versionJSON()))
				return
			}
			http.Error(w, "boom", http.StatusInternalServerError)
		},
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/elsewhere", http.StatusFound)
		},
	}
	for name, h := range cases {
		t.Run(name, func(t *testing.T) {
			srv := httptest.NewServer(h)
			defer srv.Close()
			s := newScanner(t, db, WithServer(ServerConfig{URL: srv.URL, Token: serverToken, Timeout: 5 * time.Second}))
			r, err := s.Scan(context.Background(), debianIndex(t))
			if err == nil {
				t.Fatalf("scan passed with %d findings", len(r.Findings))
			}
			t.Log(err)
			if strings.Contains(err.Error(), serverToken) {
				t.Errorf("error shows the token: %v", err)
			}
		})
	}
}

func TestServerTimeout(t *testing.T) {
	db := fixtureDB(t, now.Add(-time.Hour))
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/version" {
			w.Write([]byte(versionJSON()))
			return
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	s := newScanner(t, db, WithServer(ServerConfig{URL: srv.URL, Timeout: 500 * time.Millisecond}))
	t0 := time.Now()
	_, err := s.Scan(context.Background(), debianIndex(t))
	var se *ServerError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v, want *ServerError", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("timing out took %s", d)
	}
}

func TestWithServerRejects(t *testing.T) {
	for _, c := range []ServerConfig{
		{URL: "ftp://127.0.0.1:1"},
		{URL: "127.0.0.1:4954"},
		{URL: "http://user:pw@127.0.0.1:1"},
		{URL: "http://127.0.0.1:1/?token=pw"},
		{URL: "http://127.0.0.1:1", Timeout: -time.Second},
		{URL: "http://127.0.0.1:1", Headers: map[string]string{"Bad Header": "x"}},
		{URL: "http://127.0.0.1:1", Token: "a\nb"},
	} {
		if _, err := New(WithServer(c), WithCacheDir(t.TempDir())); err == nil {
			t.Errorf("New(WithServer(%+v)) succeeded", c)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}
