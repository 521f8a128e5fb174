package datapath

import "golang.org/x/sys/unix"

func unmount(dir string) error { return unix.Unmount(dir, 0) }
