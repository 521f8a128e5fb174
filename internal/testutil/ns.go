package testutil

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// EnterNewNetns locks the test's goroutine to its thread and moves the
// thread into a new, empty network namespace; the thread goes back at
// cleanup. Interfaces the test creates from here on, and the netlink and
// BPF calls it makes, are the namespace's only.
func EnterNewNetns(tb testing.TB) {
	tb.Helper()
	RequireRoot(tb, netnsReason)
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		tb.Fatalf("current network namespace: %v", err)
	}
	ns, err := netns.New() // the thread is in it from here on
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		tb.Fatalf("new network namespace: %v", err)
	}
	tb.Cleanup(func() {
		if err := netns.Set(orig); err != nil {
			// A thread stuck in the namespace must run nothing else:
			// it stays locked and exits with the test's goroutine.
			tb.Errorf("back to the original network namespace: %v", err)
			return
		}
		ns.Close()
		orig.Close()
		runtime.UnlockOSThread()
	})
}

// MountBPFFS mounts a bpffs of the test's own under its temporary
// directory, detached at cleanup, and returns the mount point.
func MountBPFFS(tb testing.TB) string {
	tb.Helper()
	RequireRoot(tb, netnsReason)
	fs := filepath.Join(tb.TempDir(), "bpffs")
	if err := os.Mkdir(fs, 0o700); err != nil {
		tb.Fatal(err)
	}
	if err := unix.Mount("bpf", fs, "bpf", 0, "mode=0700"); err != nil {
		tb.Fatalf("mount bpffs at %s: %v", fs, err)
	}
	tb.Cleanup(func() {
		if err := unix.Unmount(fs, unix.MNT_DETACH); err != nil {
			tb.Errorf("unmount %s: %v", fs, err)
		}
	})
	return fs
}
