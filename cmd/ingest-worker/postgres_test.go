package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/omniflowcrm/omniflow-operator/internal/store/postgres/pgtest"
)

// The worker stores into PostgreSQL with --store=postgres, the DSN taken from the
// environment (never a flag, never logged), and export reads it back the same way; a
// second worker on the same database (a second replica) sees the same records.
func TestPostgresStore(t *testing.T) {
	if err := pgtest.CheckServer(); err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.FreshDatabase(t)
	env := []string{envPostgresDSN + "=" + dsn}
	dir := t.TempDir()
	channels := filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(channels, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWorkerWith(t, env, "--store", "postgres", "--channels", channels)
	replica := startWorkerWith(t, env, "--store", "postgres", "--channels", channels)
	for i, addr := range []string{w.addr, replica.addr, w.addr} {
		id := []string{"wamid.pg-1", "wamid.pg-2", "wamid.pg-1"}[i] // the last is a redelivery
		if code, err := post(addr, delivery("15555550142", id)); err != nil || code != 200 {
			t.Fatalf("delivery %d: %d %v\n%s", i, code, err, w.log())
		}
	}
	for _, log := range []string{w.log(), replica.log()} {
		if strings.Contains(log, dsn) {
			t.Fatalf("the DSN was logged:\n%s", log)
		}
	}

	export := exec.Command(workerBinary(t), "export", "--store", "postgres", "--subject", "15555550142")
	export.Env = append(os.Environ(), env...)
	out, err := export.Output()
	if err != nil {
		t.Fatalf("export: %v", err)
	}
	ids := map[string]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(out), []byte("\n")) {
		var r struct{ Kind, ID string }
		if err := json.Unmarshal(line, &r); err != nil {
			t.Fatalf("export line %q: %v", line, err)
		}
		if r.Kind == "message" {
			ids[r.ID]++
		}
	}
	if len(ids) != 2 || ids["wamid.pg-1"] != 1 || ids["wamid.pg-2"] != 1 {
		t.Fatalf("exported messages %v, want wamid.pg-1 and wamid.pg-2 once each", ids)
	}

	// Without the DSN the worker says where it must come from.
	bad := exec.Command(workerBinary(t), "export", "--store", "postgres")
	bad.Env = append(os.Environ(), envPostgresDSN+"=")
	msg, err := bad.CombinedOutput()
	if err == nil || !strings.Contains(string(msg), envPostgresDSN) {
		t.Fatalf("export without a DSN: %v %s", err, msg)
	}
}

// Issue 17 on PostgreSQL: a worker with a key seals what it stores (a dump of the
// database holds no fixture string), export with the key reads it back, and export with
// another key fails with the reason.
func TestPostgresStoreWithAKey(t *testing.T) {
	if err := pgtest.CheckServer(); err != nil {
		t.Fatal(err)
	}
	dsn := pgtest.FreshDatabase(t)
	env := []string{envPostgresDSN + "=" + dsn}
	dir := t.TempDir()
	channels := filepath.Join(dir, "channels.yaml")
	if err := os.WriteFile(channels, []byte(channelsYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	key, other := keyFile(t, dir, "key.json"), keyFile(t, dir, "other.json")
	w := startWorkerWith(t, env, "--store", "postgres", "--channels", channels, "--data-key-file", key)
	if code, err := post(w.addr, encDelivery(encMsg, encText)); err != nil || code != 200 {
		t.Fatalf("delivery: %d %v\n%s", code, err, w.log())
	}
	stop(t, w)

	dump, err := exec.Command("pg_dump", "--data-only", dsn).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	if !bytes.Contains(dump, []byte("COPY")) {
		t.Fatal("pg_dump printed no table data: the test would prove nothing")
	}
	for _, s := range []string{encText, encName, encWaID, encMsg} {
		if bytes.Contains(dump, []byte(s)) {
			t.Errorf("%q is in the dump in clear", s)
		}
	}

	exportWith := func(args ...string) (string, string, error) {
		cmd := exec.Command(workerBinary(t), append([]string{"export", "--store", "postgres"}, args...)...)
		cmd.Env = append(os.Environ(), append(env, envDataKeySecret+"=")...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}
	out, errOut, err := exportWith("--data-key-file", key)
	if err != nil || !strings.Contains(out, encText) || !strings.Contains(out, encMsg) {
		t.Fatalf("export with the key: %v %s\n%s", err, errOut, out)
	}
	out, errOut, err = exportWith("--data-key-file", other)
	if err == nil || !strings.Contains(errOut, "a record does not authenticate under this key") || strings.Contains(out, encText) {
		t.Fatalf("export with another key: %v, stderr %q", err, errOut)
	}
}
