package xlb_test

import (
	"os"
	"os/exec"
	"testing"
)

// TestVagrantfile checks that the Vagrantfile loads and that its
// provisioner parses; the VMs themselves are brought up by `make vagrant`,
// which needs a hypervisor CI does not have.
func TestVagrantfile(t *testing.T) {
	if out, err := exec.Command("bash", "-n", "scripts/vagrant/provision.sh").CombinedOutput(); err != nil {
		t.Fatalf("scripts/vagrant/provision.sh: %v\n%s", err, out)
	}
	vagrant, err := exec.LookPath("vagrant")
	if err != nil {
		t.Skip("vagrant is not installed (apt-get install vagrant to run this check)")
	}
	// validate writes .vagrant/ next to the Vagrantfile; keep it out of the
	// tree when it was not there before.
	if _, err := os.Stat(".vagrant"); os.IsNotExist(err) {
		t.Cleanup(func() { os.RemoveAll(".vagrant") })
	}
	cmd := exec.Command(vagrant, "validate")
	cmd.Env = append(os.Environ(), "VAGRANT_CHECKPOINT_DISABLE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vagrant validate: %v\n%s", err, out)
	}
}
