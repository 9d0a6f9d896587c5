package exepages

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestReadOnlyRanges(t *testing.T) {
	const maps = `00400000-0150c000 r-xp 00000000 fe:01 4242                               /usr/bin/keelson
0150c000-0265a000 r--p 0110c000 fe:01 4242                               /usr/bin/keelson
0265a000-0275b000 rw-p 0225a000 fe:01 4242                               /usr/bin/keelson
0275b000-047ca000 rw-p 00000000 00:00 0
c000000000-c004000000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fe:01 4243                       /usr/lib/other.so
7f0000002000-7f0000003000 r--s 00000000 fe:01 4242                       /usr/bin/keelson
7ffd1e5f2000-7ffd1e5f4000 r-xp 00000000 00:00 0                          [vdso]
`
	got, err := readOnlyRanges([]byte(maps), unix.Mkdev(0xfe, 1), 4242)
	if err != nil {
		t.Fatal(err)
	}
	want := []addrRange{{0x400000, 0x150c000}, {0x150c000, 0x265a000}}
	if !slices.Equal(got, want) {
		t.Errorf("ranges %x, want %x (the executable's private read-only mappings only)", got, want)
	}
	for _, bad := range []string{
		"00400000-0150c000 r-xp 00000000\n",
		"00400000-0150c000 r-xp 00000000 fe01 4242 /x\n",
		"0150c000-00400000 r-xp 00000000 fe:01 4242 /x\n",
		"zz-0150c000 r-xp 00000000 fe:01 4242 /x\n",
	} {
		if _, err := readOnlyRanges([]byte(bad), unix.Mkdev(0xfe, 1), 4242); err == nil {
			t.Errorf("maps %q: no error", bad)
		}
	}
}

// written is in the executable's writable mapping, which Release must leave
// alone: a private page dropped there would come back as the file has it.
var written = "as linked"

// TestRelease drops this test binary's own read-only pages and checks that
// it gave back memory and that what it wrote is still there. That the test
// goes on running shows the code comes back from the page cache.
func TestRelease(t *testing.T) {
	written = strings.Repeat("changed", 2)
	released, err := Release()
	if err != nil {
		t.Fatal(err)
	}
	if released <= 0 {
		t.Errorf("released %d bytes; start-up must have left code resident", released)
	}
	if written != "changedchanged" {
		t.Fatalf("a written variable reads %q after Release", written)
	}
	t.Logf("released %d KiB; %d KiB of file-backed memory resident after", released>>10, rssFile()>>10)
}
