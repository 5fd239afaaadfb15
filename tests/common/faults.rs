//! Real kernel faults on a TCP link, by port: resets with `ss -K` and
//! blackholes with iptables DROP rules (removed when the guard drops, even
//! when the test panics). Both need root.

use std::process::Command;

/// Resets every established connection to or from `port`.
pub fn reset_link(port: u16) {
    let filter = format!("( dport = :{port} or sport = :{port} )");
    let out = Command::new("ss")
        .args(["-K", "state", "established", &filter])
        .output()
        .expect("run ss");
    assert!(out.status.success(), "ss -K failed: {out:?}");
}

/// Drops every packet to and from `port` on loopback while it lives.
pub struct Blackhole(u16);

impl Blackhole {
    fn rules(port: u16) -> [Vec<String>; 2] {
        let p = port.to_string();
        ["--dport", "--sport"].map(|dir| {
            ["INPUT", "-i", "lo", "-p", "tcp", dir, &p, "-j", "DROP"]
                .map(String::from)
                .to_vec()
        })
    }

    /// Starts dropping.
    pub fn new(port: u16) -> Blackhole {
        for rule in Self::rules(port) {
            let ok = Command::new("iptables")
                .arg("-I")
                .args(&rule)
                .status()
                .expect("run iptables");
            assert!(ok.success(), "iptables -I {rule:?} failed");
        }
        Blackhole(port)
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        for rule in Self::rules(self.0) {
            let _ = Command::new("iptables").arg("-D").args(&rule).status();
        }
    }
}

/// The remote port of the one established TCP connection of process `pid`
/// (for `rock -d`: its link to rockd, held by its worker process, see
/// [`super::rock_worker`]), if it has one.
pub fn link_port_of(pid: u32) -> Option<u16> {
    let pid = super::rock_worker(pid);
    let out = Command::new("ss")
        .args(["-H", "-tnp", "state", "established"])
        .output()
        .expect("run ss");
    let needle = format!("pid={pid},");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .find_map(|l| {
            // Columns: Recv-Q Send-Q Local:Port Peer:Port Process
            let peer = l.split_whitespace().nth(3)?;
            peer.rsplit_once(':')?.1.parse().ok()
        })
}

/// The pid of the process listening on TCP `port`, if any.
pub fn listener_pid(port: u16) -> Option<u32> {
    let out = Command::new("ss")
        .args(["-H", "-tlnp", &format!("( sport = :{port} )")])
        .output()
        .expect("run ss");
    let text = String::from_utf8_lossy(&out.stdout);
    let at = text.find("pid=")? + 4;
    text[at..].split(',').next()?.parse().ok()
}
