//! A private network of Linux network namespaces for the tests that break
//! real networks: a "laptop" and a "server" joined through a "router".
//!
//! ```text
//!   laptop                     router                        server
//!   LAP 10.1.K.2/24 ──veth── RL 10.1.{0..3}.1/24
//!                            RS 10.2.{0..1}.1/24 ──veth── SRV 10.2.K.2/24
//! ```
//!
//! [`Net::add_second_laptop`] adds another machine for the same user,
//! `LAP2 10.3.0.2/24`, on its own cable to the router (`10.3.0.1`).
//!
//! The router has a gateway address on every subnet the laptop or the server
//! can move to, so a move is what it is on a real network: the old address
//! goes, a new one in another subnet comes, the default route is re-pointed.
//! The server's sshd (the fixture, [`Net::start_sshd`]) listens on port 22
//! of every server address; the laptop reaches it by the name
//! [`SERVER_NAME`], which the laptop's `/etc/netns/LAPTOP/hosts` resolves.
//!
//! Invariants:
//! * Names are unique to the test process and the [`Net`] (pid + counter):
//!   namespaces `rkt-PID-N-laptop|router|server`, interfaces `rkPIDnN…`,
//!   at most 15 characters, so parallel tests and other test runs never
//!   clash.
//! * [`Drop`] removes everything, also when the test panics: it kills every
//!   process left in the namespaces, deletes the links, the namespaces and
//!   `/etc/netns/LAPTOP`. A net left behind by a test process that was
//!   killed outright (no Drop) is removed by the next [`Net::new`]: the
//!   names carry the pid, and the owner being gone is the sign.
//! * `ip netns exec` bind-mounts `/etc/netns/LAPTOP/hosts` over
//!   `/etc/hosts` for each command it starts; the file is rewritten in
//!   place (same inode), so a running rock sees every change on its next
//!   name lookup.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::{Sshd, SshdBuilder, require_root};

/// The name the laptop knows the server by.
pub const SERVER_NAME: &str = "rock-server";
/// The second laptop's address ([`Net::add_second_laptop`]).
pub const SECOND_LAPTOP_ADDR: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 2);

/// Subnets the laptop can be on: 10.1.K.0/24.
const LAPTOP_SUBNETS: u8 = 4;
/// Subnets the server can be on: 10.2.K.0/24.
const SERVER_SUBNETS: u8 = 2;
/// Prefix of every namespace this harness makes.
const NS_PREFIX: &str = "rkt-";

/// Three namespaces, two veth links, and where the laptop and the server
/// are now; see the module documentation.
#[derive(Debug)]
pub struct Net {
    /// The laptop namespace's name.
    pub laptop: String,
    /// The router namespace's name.
    pub router: String,
    /// The server namespace's name.
    pub server: String,
    /// The laptop's interface (in `laptop`).
    pub laptop_if: String,
    /// The router's interface towards the laptop.
    router_laptop_if: String,
    /// The router's interface towards the server.
    router_server_if: String,
    /// The server's interface (in `server`).
    pub server_if: String,
    /// Which 10.1.K.0/24 the laptop is on.
    laptop_subnet: u8,
    /// Which 10.2.K.0/24 the server is on.
    server_subnet: u8,
    /// A second laptop, once [`Net::add_second_laptop`] made it: its
    /// namespace and its interface there.
    second_laptop: Option<(String, String)>,
}

impl Net {
    /// Builds the network. Panics (after removing what it made) when a step
    /// fails.
    pub fn new() -> Net {
        require_root("network namespaces");
        remove_leftovers();
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id();
        let ns = |role: &str| format!("{NS_PREFIX}{pid}-{n}-{role}");
        let dev = |role: &str| {
            let name = format!("rk{pid}n{n}{role}");
            assert!(name.len() <= 15, "interface name {name} is too long");
            name
        };
        let net = Net {
            laptop: ns("laptop"),
            router: ns("router"),
            server: ns("server"),
            laptop_if: dev("l"),
            router_laptop_if: dev("rl"),
            router_server_if: dev("rs"),
            server_if: dev("s"),
            laptop_subnet: 0,
            server_subnet: 0,
            second_laptop: None,
        };
        // From here on, Drop cleans up whatever exists.
        net.build();
        net
    }

    fn build(&self) {
        for ns in [&self.laptop, &self.router, &self.server] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ip(&[
            "-n",
            &self.laptop,
            "link",
            "add",
            &self.laptop_if,
            "type",
            "veth",
            "peer",
            "name",
            &self.router_laptop_if,
            "netns",
            &self.router,
        ]);
        ip(&[
            "-n",
            &self.server,
            "link",
            "add",
            &self.server_if,
            "type",
            "veth",
            "peer",
            "name",
            &self.router_server_if,
            "netns",
            &self.router,
        ]);
        for k in 0..LAPTOP_SUBNETS {
            addr_add(&self.router, &self.router_laptop_if, &cidr(gateway(1, k)));
        }
        for k in 0..SERVER_SUBNETS {
            addr_add(&self.router, &self.router_server_if, &cidr(gateway(2, k)));
        }
        sysctl(&self.router, "net.ipv4.ip_forward", "1");
        for (ns, dev) in [
            (&self.router, &self.router_laptop_if),
            (&self.router, &self.router_server_if),
            (&self.laptop, &self.laptop_if),
            (&self.server, &self.server_if),
        ] {
            link_set(ns, dev, true);
        }
        addr_add(&self.laptop, &self.laptop_if, &cidr(self.laptop_addr()));
        default_route(&self.laptop, gateway(1, self.laptop_subnet));
        addr_add(&self.server, &self.server_if, &cidr(self.server_addr()));
        default_route(&self.server, gateway(2, self.server_subnet));
        self.point_server_name();
    }

    /// The laptop's address now.
    pub fn laptop_addr(&self) -> Ipv4Addr {
        host(1, self.laptop_subnet)
    }

    /// The server's address now.
    pub fn server_addr(&self) -> Ipv4Addr {
        host(2, self.server_subnet)
    }

    /// Starts the fixture's sshd in the server namespace, on port 22 of
    /// every address it has (so it stays reachable when the server moves),
    /// with a client config and known_hosts that name it [`SERVER_NAME`].
    pub fn start_sshd(&self, builder: SshdBuilder) -> Sshd {
        builder
            .in_netns(&self.server, IpAddr::V4(Ipv4Addr::UNSPECIFIED))
            .client_host(SERVER_NAME)
            .start()
    }

    /// Limits both directions between laptop and server to `rate` (a `tc`
    /// rate such as `1gbit`) with a token bucket on each of the router's
    /// two interfaces, queueing up to `queue` of delay before dropping.
    /// (A token bucket, not netem: kernels without `sch_netem` have it.)
    pub fn shape(&self, rate: &str, queue: &str) {
        for dev in [&self.router_laptop_if, &self.router_server_if] {
            let args = [
                "-n",
                &self.router,
                "qdisc",
                "replace",
                "dev",
                dev,
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "512kb",
                "latency",
                queue,
            ];
            let out = Command::new("tc")
                .args(args)
                .stdin(Stdio::null())
                .output()
                .expect("run tc (install iproute2: scripts/setup)");
            assert!(
                out.status.success(),
                "`tc {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }

    /// The router's address on the laptop's subnet now: where a jump host
    /// running on the router is reached from the laptop.
    pub fn router_laptop_addr(&self) -> Ipv4Addr {
        gateway(1, self.laptop_subnet)
    }

    /// Starts a second fixture sshd in the *router* namespace, on port 22
    /// of [`Net::router_laptop_addr`]: a bastion between the laptop and the
    /// server (its client config names it by that address).
    pub fn start_jump_sshd(&self, builder: SshdBuilder) -> Sshd {
        builder
            .in_netns(&self.router, IpAddr::V4(self.router_laptop_addr()))
            .start()
    }

    /// Makes the router stop forwarding from the laptop's subnets to the
    /// server's (iptables FORWARD DROP inside the router namespace only,
    /// gone with it): the laptop then reaches the server only through a
    /// jump host on the router, whose own connections leave from the
    /// router itself and are not forwarded.
    pub fn block_laptop_to_server(&self) {
        let out = in_netns(
            &self.router,
            Command::new("iptables").args([
                "-I",
                "FORWARD",
                "-s",
                "10.1.0.0/16",
                "-d",
                "10.2.0.0/16",
                "-j",
                "DROP",
            ]),
        )
        .output()
        .expect("run iptables in the router namespace");
        assert!(
            out.status.success(),
            "iptables FORWARD DROP in {} failed: {}",
            self.router,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Silently drops everything the router forwards between the laptop
    /// and the server, both ways (iptables FORWARD DROP in the router
    /// namespace), while the guard lives: a path that dies without a
    /// word, as when a NAT forgets a connection or a cable is pulled two
    /// hops away.
    pub fn blackhole_path(&self) -> PathBlackhole<'_> {
        for rule in PathBlackhole::RULES {
            iptables_in(&self.router, "-I", &rule);
        }
        PathBlackhole { net: self }
    }

    /// `cmd` as it would run on the laptop: `ip netns exec LAPTOP …`, which
    /// also puts the laptop's hosts file in place. Keeps `cmd`'s arguments,
    /// environment changes and directory; set stdio on the result.
    pub fn on_laptop(&self, cmd: &Command) -> Command {
        in_netns(&self.laptop, cmd)
    }

    /// Takes the laptop's link down: the interface goes down, and with it
    /// every route through it.
    pub fn laptop_link_down(&self) {
        link_set(&self.laptop, &self.laptop_if, false);
    }

    /// Brings the laptop's link up again and restores its default route
    /// (the kernel dropped it with the link), as DHCP would on a real
    /// laptop.
    pub fn laptop_link_up(&self) {
        link_set(&self.laptop, &self.laptop_if, true);
        default_route(&self.laptop, gateway(1, self.laptop_subnet));
    }

    /// Moves the laptop to the next subnet: the old address is removed, a
    /// new one added, the default route re-pointed to the new gateway.
    /// Works with the link down too (the route is then added when it comes
    /// up, by [`Net::laptop_link_up`]). Returns the new address.
    pub fn move_laptop(&mut self) -> Ipv4Addr {
        let old = self.laptop_addr();
        self.laptop_subnet = (self.laptop_subnet + 1) % LAPTOP_SUBNETS;
        let new = self.laptop_addr();
        addr_del(&self.laptop, &self.laptop_if, &cidr(old));
        addr_add(&self.laptop, &self.laptop_if, &cidr(new));
        if link_is_up(&self.laptop, &self.laptop_if) {
            default_route(&self.laptop, gateway(1, self.laptop_subnet));
        }
        new
    }

    /// Moves the server to its next subnet (old address removed, new one
    /// added, default route re-pointed) and re-points [`SERVER_NAME`] in
    /// the laptop's hosts file. Returns the new address.
    pub fn move_server(&mut self) -> Ipv4Addr {
        let old = self.server_addr();
        self.server_subnet = (self.server_subnet + 1) % SERVER_SUBNETS;
        let new = self.server_addr();
        addr_del(&self.server, &self.server_if, &cidr(old));
        addr_add(&self.server, &self.server_if, &cidr(new));
        default_route(&self.server, gateway(2, self.server_subnet));
        self.point_server_name();
        new
    }

    fn point_server_name(&self) {
        write_hosts(
            &self.laptop,
            &[(IpAddr::V4(self.server_addr()), SERVER_NAME)],
        );
    }

    /// A second laptop, another machine for the same user: namespace
    /// `…-laptop2`, joined to the router by its own cable on subnet
    /// 10.3.0.0/24 (address [`SECOND_LAPTOP_ADDR`]), knowing the server by
    /// [`SERVER_NAME`] too. Returns the namespace's name.
    pub fn add_second_laptop(&mut self) -> String {
        let ns = self.laptop.replace("-laptop", "-laptop2");
        let dev = format!("{}2", self.laptop_if);
        let router_dev = format!("{}2", self.router_laptop_if);
        assert!(
            router_dev.len() <= 15,
            "interface name {router_dev} is too long"
        );
        ip(&["netns", "add", &ns]);
        // From here on, Drop removes it.
        self.second_laptop = Some((ns.clone(), dev.clone()));
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            &ns,
            "link",
            "add",
            &dev,
            "type",
            "veth",
            "peer",
            "name",
            &router_dev,
            "netns",
            &self.router,
        ]);
        addr_add(&self.router, &router_dev, "10.3.0.1/24");
        link_set(&self.router, &router_dev, true);
        link_set(&ns, &dev, true);
        addr_add(&ns, &dev, &cidr(SECOND_LAPTOP_ADDR));
        default_route(&ns, Ipv4Addr::new(10, 3, 0, 1));
        write_hosts(&ns, &[(IpAddr::V4(self.server_addr()), SERVER_NAME)]);
        ns
    }

    /// Every process in the laptop namespace.
    pub fn laptop_pids(&self) -> Vec<u32> {
        pids(&self.laptop)
    }

    /// `ss -tnpa` in namespace `ns`, for messages.
    pub fn sockets(&self, ns: &str) -> String {
        let out = in_netns(ns, Command::new("ss").args(["-tnpa"]))
            .stdin(Stdio::null())
            .output()
            .expect("run ss");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some((ns, dev)) = self.second_laptop.take() {
            kill_all(&ns);
            let _ = ip_status(&["-n", &ns, "link", "del", &dev]);
            let _ = ip_status(&["netns", "del", &ns]);
            let _ = fs::remove_dir_all(etc_netns(&ns));
        }
        for ns in [&self.laptop, &self.server, &self.router] {
            kill_all(ns);
        }
        for (ns, dev) in [
            (&self.laptop, &self.laptop_if),
            (&self.server, &self.server_if),
        ] {
            let _ = ip_status(&["-n", ns, "link", "del", dev]);
        }
        for ns in [&self.laptop, &self.server, &self.router] {
            let _ = ip_status(&["netns", "del", ns]);
            let _ = fs::remove_dir_all(etc_netns(ns));
        }
    }
}

/// `10.NET.K.1`: the router's address on subnet K of network NET.
fn gateway(net: u8, k: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, net, k, 1)
}

/// `10.NET.K.2`: the laptop's or server's address on subnet K.
fn host(net: u8, k: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, net, k, 2)
}

fn cidr(addr: Ipv4Addr) -> String {
    format!("{addr}/24")
}

/// Runs `ip ARGS…`, panicking with its message when it fails.
pub fn ip(args: &[&str]) {
    if let Err(e) = ip_status(args) {
        panic!("{e}");
    }
}

fn ip_status(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run ip (install iproute2: scripts/setup)");
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `cmd` run inside network namespace `ns` with `ip netns exec`, which also
/// bind-mounts the files of `/etc/netns/NS/` over `/etc/`. `ip` execs the
/// command itself, so the child's pid is the command's.
pub fn in_netns(ns: &str, cmd: &Command) -> Command {
    let mut wrapped = Command::new("ip");
    wrapped
        .args(["netns", "exec", ns])
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => wrapped.env(key, value),
            None => wrapped.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        wrapped.current_dir(dir);
    }
    wrapped.stdin(Stdio::null());
    wrapped
}

/// Sets link `dev` of namespace `ns` up or down.
pub fn link_set(ns: &str, dev: &str, up: bool) {
    ip(&["-n", ns, "link", "set", dev, if up { "up" } else { "down" }]);
}

fn link_is_up(ns: &str, dev: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-o", "link", "show", dev])
        .output()
        .expect("run ip");
    let text = String::from_utf8_lossy(&out.stdout);
    // "<BROADCAST,MULTICAST,UP,LOWER_UP>": the administrative flag.
    text.split(['<', '>'])
        .nth(1)
        .is_some_and(|flags| flags.split(',').any(|f| f == "UP"))
}

/// Adds address `cidr` (e.g. `10.1.0.2/24`) to `dev` in `ns`.
pub fn addr_add(ns: &str, dev: &str, cidr: &str) {
    ip(&["-n", ns, "addr", "add", cidr, "dev", dev]);
}

/// Removes address `cidr` from `dev` in `ns`.
pub fn addr_del(ns: &str, dev: &str, cidr: &str) {
    ip(&["-n", ns, "addr", "del", cidr, "dev", dev]);
}

/// Points the default route of `ns` at `via` (replacing any other).
pub fn default_route(ns: &str, via: Ipv4Addr) {
    ip(&[
        "-n",
        ns,
        "route",
        "replace",
        "default",
        "via",
        &via.to_string(),
    ]);
}

/// Sets a sysctl inside `ns` (they are per namespace for networking).
pub fn sysctl(ns: &str, key: &str, value: &str) {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sysctl",
            "-qw",
            &format!("{key}={value}"),
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run sysctl");
    assert!(
        out.status.success(),
        "sysctl {key}={value} in {ns} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `/etc/netns/NS`: what `ip netns exec NS` mounts over `/etc`.
fn etc_netns(ns: &str) -> PathBuf {
    Path::new("/etc/netns").join(ns)
}

/// Writes `/etc/netns/NS/hosts`: localhost and `names`. Rewritten in place
/// (truncate and write, never replace), because `ip netns exec` bind-mounts
/// the file's inode: a new file would stay invisible to running commands.
pub fn write_hosts(ns: &str, names: &[(IpAddr, &str)]) {
    let dir = etc_netns(ns);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let mut text = String::from("127.0.0.1 localhost\n::1 localhost\n");
    for (addr, name) in names {
        text.push_str(&format!("{addr} {name}\n"));
    }
    let path = dir.join("hosts");
    fs::write(&path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// Every process in namespace `ns` (`ip netns pids`).
pub fn pids(ns: &str) -> Vec<u32> {
    let out = Command::new("ip")
        .args(["netns", "pids", ns])
        .stdin(Stdio::null())
        .output()
        .expect("run ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Sends `signal` to process `pid` (gone already is fine).
pub fn signal(pid: u32, signal: libc::c_int) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as libc::pid_t, signal) };
}

/// Kills every process in `ns` and waits (a little) until none is left.
fn kill_all(ns: &str) {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left = pids(ns);
        if left.is_empty() || Instant::now() > end {
            return;
        }
        for pid in left {
            signal(pid, libc::SIGKILL);
        }
        thread::sleep(Duration::from_millis(20));
    }
}

/// Removes the nets of test processes that died without cleaning up.
fn remove_leftovers() {
    let Ok(entries) = fs::read_dir("/run/netns") else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(owner) = name
            .strip_prefix(NS_PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{owner}")).exists() {
            continue;
        }
        kill_all(&name);
        let _ = ip_status(&["netns", "del", &name]);
        let _ = fs::remove_dir_all(etc_netns(&name));
    }
}

/// A blackhole between the laptop and the server ([`Net::blackhole_path`]);
/// lifted when dropped.
pub struct PathBlackhole<'a> {
    net: &'a Net,
}

impl PathBlackhole<'_> {
    const RULES: [[&'static str; 6]; 2] = [
        ["-s", "10.1.0.0/16", "-d", "10.2.0.0/16", "-j", "DROP"],
        ["-s", "10.2.0.0/16", "-d", "10.1.0.0/16", "-j", "DROP"],
    ];
}

impl Drop for PathBlackhole<'_> {
    fn drop(&mut self) {
        for rule in Self::RULES {
            iptables_in(&self.net.router, "-D", &rule);
        }
    }
}

/// `iptables OP FORWARD RULE…` in namespace `ns`.
fn iptables_in(ns: &str, op: &str, rule: &[&str]) {
    let out = in_netns(
        ns,
        Command::new("iptables").arg(op).arg("FORWARD").args(rule),
    )
    .output()
    .expect("run iptables in a namespace (install iptables: scripts/setup)");
    assert!(
        out.status.success() || std::thread::panicking(),
        "iptables {op} FORWARD {} in {ns} failed: {}",
        rule.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
