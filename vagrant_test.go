package xlb_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestVagrantfile checks that the Vagrantfile loads and that its
// provisioner parses; the VMs themselves are brought up by `make vagrant`,
// which needs a hypervisor CI does not have.
func TestVagrantfile(t *testing.T) {
	const provision = "scripts/vagrant/provision.sh"
	if out, err := exec.Command("bash", "-n", provision).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", provision, err, out)
	}
	vagrant, err := exec.LookPath("vagrant")
	if err != nil {
		t.Skip("vagrant is not installed (apt-get install vagrant to run this check)")
	}
	// validate writes .vagrant/ beside the Vagrantfile and state under
	// VAGRANT_HOME: run it on a copy, so the tree and the user's home stay
	// as they are.
	dir := t.TempDir()
	for _, f := range []string{"Vagrantfile", provision} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(vagrant, "validate")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "VAGRANT_CHECKPOINT_DISABLE=1", "VAGRANT_HOME="+filepath.Join(dir, ".vagrant.d"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vagrant validate: %v\n%s", err, out)
	}
}
