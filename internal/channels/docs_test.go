package channels

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// The channels files shown in the README and the worker's manual are what a user copies:
// each must load, with the three platforms' channels it shows.
func TestDocumentedChannelsFilesLoad(t *testing.T) {
	t.Parallel()
	block := regexp.MustCompile("(?s)```yaml\n(tenant: .*?)```")
	for _, doc := range []string{"README.md", filepath.Join("docs", "ingest-worker.md")} {
		raw, err := os.ReadFile(filepath.Join("..", "..", doc))
		if err != nil {
			t.Fatal(err)
		}
		m := block.FindSubmatch(raw)
		if m == nil {
			t.Fatalf("%s shows no channels file (a yaml block starting with tenant:)", doc)
		}
		f, err := ParseFile(m[1])
		if err != nil {
			t.Fatalf("%s: the documented channels file does not load: %v", doc, err)
		}
		platforms := map[string]bool{}
		for _, c := range f.Channels {
			platforms[string(c.Platform)] = true
		}
		if f.Tenant != "acme" || len(platforms) != 3 {
			t.Fatalf("%s: tenant %q, platforms %v", doc, f.Tenant, platforms)
		}
	}
}
