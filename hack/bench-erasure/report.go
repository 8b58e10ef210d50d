package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/omniflowcrm/omniflow-operator/internal/store"
)

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func report(w io.Writer, results []backendResult, plans bool) {
	fmt.Fprintln(w, "\n### Erasing one person against one indexed single-row delete (medians)")
	fmt.Fprintln(w, "\n| backend | messages | contacts | build | erase one subject (20 messages) | one indexed delete | ratio |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, r := range results {
		for _, s := range r.sizes {
			fmt.Fprintf(w, "| %s | %d | %d | %s | %s | %s | %.1f× |\n", r.backend, s.messages, s.contacts,
				s.build.Round(time.Second), ms(s.erase), ms(s.delete), float64(s.erase)/float64(s.delete))
		}
	}
	fmt.Fprintln(w, "\n### Ingest latency (single-message deliveries) alone, during an erasure and during retention")
	fmt.Fprintln(w, "\n| backend | phase | took | messages deleted | deliveries | p50 | p99 | p99 / alone before | errors |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	for _, r := range results {
		for i, p := range r.phases {
			base := r.phases[i-i%2] // the phase alone just before
			fmt.Fprintf(w, "| %s | %s | %s | %d | %d | %s | %s | %.2f | %d |\n", r.backend, p.name, p.took.Round(time.Millisecond),
				p.deleted, p.requests, ms(p.p50), ms(p.p99), float64(p.p99)/float64(base.p99), p.errors)
		}
	}
	fmt.Fprintln(w, "\n### Erasing a whole tenant (SQLite: removing its directory; PostgreSQL: DROP DATABASE ... WITH (FORCE))")
	fmt.Fprintln(w, "\n| backend | messages | contacts | size | took |")
	fmt.Fprintln(w, "|---|---|---|---|---|")
	for _, r := range results {
		for _, s := range r.sizes {
			fmt.Fprintf(w, "| %s | %d | %d | %.0f MB | %s |\n", r.backend, s.messages, s.contacts, float64(s.tenantBytes)/1e6, ms(s.tenantErase))
		}
	}
	fmt.Fprintln(w, "\n### Query plans of erasure, export by subject and retention (largest store)")
	for _, r := range results {
		problems := store.PlanErrors(r.plans)
		fmt.Fprintf(w, "\n%s: %d statements, %d problems\n", r.backend, len(r.plans), len(problems))
		for _, p := range problems {
			fmt.Fprintln(w, "  PROBLEM", p)
		}
		for _, c := range r.plans {
			if plans || len(c.Problems) > 0 {
				fmt.Fprintf(w, "  %s: %s\n", c.Name, strings.Join(trimmed(c.Plan), " / "))
			}
		}
	}
}

func trimmed(lines []string) []string {
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = strings.TrimSpace(l)
	}
	return out
}
