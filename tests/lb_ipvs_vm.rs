//! Control-plane load balancing on a kernel with IPVS. This host's kernel has none, so the
//! test boots Debian's kernel in QEMU (TCG, ~10 s a boot) with `labs/ipvs-vm/run.sh`,
//! carrying this test binary and the `vipr` binary into the guest, and runs the same
//! scenario as the nftables test there (`guest_ipvs_scenario`), checking `ipvsadm -Ln` and
//! connections through the VIP; a virtual service made beforehand with ipvsadm must survive
//! vipr's start, changes and exit untouched.

mod daemon_common;
mod lb_common;

use std::process::Command;

use daemon_common::{vipr_bin, workdir};
use lb_common::{lb_env, scenario, Dataplane};

const GUEST: &str = "VIPR_LB_GUEST";

#[test]
fn ipvs_in_a_vm() {
    if std::env::var_os(GUEST).is_some() {
        return; // we are the guest: guest_ipvs_scenario is the test here
    }
    let exe = std::env::current_exe().expect("test binary");
    let exe = exe.to_str().expect("utf-8 path");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/labs/ipvs-vm/run.sh");
    let t0 = std::time::Instant::now();
    let out = Command::new(script)
        .args([
            "--add",
            exe,
            "--add",
            vipr_bin(),
            "--env",
            &format!("{GUEST}=1"),
        ])
        .args(["--env", "RUST_BACKTRACE=1", "--"])
        .args([
            exe,
            "--exact",
            "guest_ipvs_scenario",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .output()
        .expect("run labs/ipvs-vm/run.sh");
    let console = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    eprintln!(
        "----- guest console ({:?}):\n{console}\n{errors}-----",
        t0.elapsed()
    );
    assert!(
        out.status.success(),
        "the IPVS scenario failed in the guest ({})",
        out.status
    );
    assert!(
        console.contains("test result: ok. 1 passed"),
        "the guest did not run the scenario"
    );
    assert!(
        console.contains("lb_ipvs: backend killed"),
        "no timings from the guest"
    );
}

/// Runs only inside the guest started by [`ipvs_in_a_vm`] (on the host it returns at once).
#[test]
fn guest_ipvs_scenario() {
    if std::env::var_os(GUEST).is_none() {
        return;
    }
    let dir = workdir();
    let t = scenario(
        Dataplane::Ipvs,
        lb_env(Dataplane::Ipvs, &dir.path),
        &dir.join("vipr.log"),
    );
    eprintln!(
        "lb_ipvs: backend killed -> removed {:?} (1 s check interval); back -> added {:?}",
        t.failure_to_removed, t.recovery_to_added
    );
}
