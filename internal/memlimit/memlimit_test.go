package memlimit

import "testing"

func TestSoftMemoryLimitIsEightyPercentOfARealLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		content string
		want    int64
	}{
		{"536870912\n", 429496729},   // cgroup v2, 512 MiB
		{"max\n", 0},                 // cgroup v2, no limit
		{"9223372036854771712\n", 0}, // cgroup v1, no limit
		{"", 0},                      // unreadable
		{"not a number", 0},          // unreadable
		{"0", 0},                     // nonsense
		{"375M", 0},                  // cgroup files hold bytes only
	} {
		if got := softMemoryLimit(tc.content); got != tc.want {
			t.Errorf("softMemoryLimit(%q) = %d, want %d", tc.content, got, tc.want)
		}
	}
}
