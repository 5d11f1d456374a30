//! Checks the harness itself, without cpam: the namespace layout, the stock
//! sshd target in the customer namespace, and that the vendor namespace
//! cannot reach it directly.

use std::process::Command;
use std::time::Duration;

use cpam_tests::netns::{Probe, Topology};
use cpam_tests::process::{Child, run};
use cpam_tests::sshd::{Sshd, ssh_cmd};

#[test]
fn harness_selfcheck() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (vendor_name, customer_name);
    {
        let topo = Topology::create()?;
        vendor_name = topo.vendor.name().to_string();
        customer_name = topo.customer.name().to_string();

        // The veth link works (so "unreachable" below means something): a
        // closed port on the other side answers with a reset.
        assert_eq!(
            topo.vendor.probe(&topo.customer_addr.to_string(), 9),
            Probe::Refused,
            "the customer veth address does not answer from the vendor ns"
        );

        let sshd = Sshd::start(&topo.customer, dir.path(), &[2022])?;
        let out = run(
            "ssh-direct",
            ssh_cmd(&topo.customer, &sshd.client_key, 2022, &["echo", "hello"]),
            dir.path(),
            Duration::from_secs(20),
        )?;
        assert!(
            out.success(),
            "ssh inside the customer ns failed: {}\n{}",
            out.stderr,
            sshd.child.logs()
        );
        assert_eq!(out.stdout.trim(), "hello");

        assert!(
            !topo
                .vendor
                .can_connect(&topo.customer_addr.to_string(), 2022),
            "the target sshd is reachable from the vendor ns at the customer veth address"
        );
        assert!(
            !topo.vendor.can_connect("127.0.0.1", 2022),
            "the target sshd is reachable from the vendor ns at 127.0.0.1"
        );
        let direct = run(
            "ssh-from-vendor",
            ssh_cmd(&topo.vendor, &sshd.client_key, 2022, &["true"]),
            dir.path(),
            Duration::from_secs(20),
        )?;
        assert!(
            !direct.success(),
            "ssh from the vendor ns reached the target"
        );

        // wait_for_line returns the rest of the first matching stdout line.
        let mut sh = Command::new("sh");
        sh.args(["-c", "echo noise; echo 'ready on 1.2.3.4:5'; sleep 30"]);
        let mut child = Child::spawn("sh", sh, dir.path())?;
        assert_eq!(
            child.wait_for_line("ready on ", Duration::from_secs(5))?,
            "1.2.3.4:5"
        );
        child.kill()?;
        assert!(!child.is_running());
    }
    // Both namespaces are gone after drop.
    let list = Command::new("ip").args(["netns", "list"]).output()?;
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        !list.contains(&vendor_name) && !list.contains(&customer_name),
        "namespaces left behind: {list}"
    );
    Ok(())
}
