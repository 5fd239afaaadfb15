//! A real OpenSSH sshd for one test: its own port on 127.0.0.1 (or port 22
//! in a network namespace), its own temporary directory with host key,
//! client key, authorized_keys, config, pid file and log, and a client
//! config whose `Host rocktest` reaches it.
//!
//! Invariants:
//! * Started with `-D` as a child of the test process and reported ready
//!   only after its log says it listens on *our* port and it has answered one
//!   connection with an SSH banner.
//! * Everything it starts dies with it: the listener is made a child
//!   subreaper, so even a daemonised grandchild (a detached `rockd`) is
//!   re-parented to it rather than to init, and [`Drop`] stops and kills the
//!   whole tree. Drop runs when a test panics too. If the test process itself
//!   dies, the listener gets SIGTERM (parent-death signal).
//! * Ports race with other tests and programs; a failed bind is retried on a
//!   new port.
//! * Optionally ([`SshdBuilder::in_netns`]) sshd runs inside a network
//!   namespace, on port 22 of a given address; readiness is then checked
//!   from inside that namespace (its log, and a banner read by a thread that
//!   joined the namespace), never from the host's.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{self, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::{current_user, require_root, user_exists};

/// The local user made by `scripts/setup` for password and
/// keyboard-interactive authentication tests.
pub const PASSWORD_USER: &str = "rocktest-pw";
/// That user's password (a test machine's throw-away account).
pub const PASSWORD: &str = "rock-test-password";

const SSHD: &str = "/usr/sbin/sshd";
const SFTP_SERVER: &str = "/usr/lib/openssh/sftp-server";
/// sshd's privilege-separation directory, compiled into Debian's sshd.
const PRIVSEP_DIR: &str = "/run/sshd";
/// Attempts at finding a port that sshd can bind before giving up.
const PORT_ATTEMPTS: u32 = 20;
/// How long sshd may take to start listening.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Where `ip netns add` keeps the namespaces it names.
const NETNS_DIR: &str = "/run/netns";

/// Options for the sshd to start; see [`Sshd::builder`].
#[derive(Debug, Default, Clone)]
pub struct SshdBuilder {
    password_auth: bool,
    kbd_interactive_auth: bool,
    allow_users: Vec<String>,
    extra: Vec<String>,
    /// The loopback address to listen on; 127.0.0.1 when unset.
    listen: Option<Ipv4Addr>,
    netns: Option<NetnsListen>,
    client_host: Option<String>,
}

/// Where sshd runs when it runs in a network namespace.
#[derive(Debug, Clone)]
struct NetnsListen {
    /// The namespace's name, as `ip netns add` made it.
    name: String,
    /// The address sshd listens on there (port 22).
    addr: IpAddr,
}

impl SshdBuilder {
    /// Allow `PasswordAuthentication` (off by default: keys only).
    pub fn password_auth(mut self, on: bool) -> Self {
        self.password_auth = on;
        self
    }

    /// Allow `KbdInteractiveAuthentication`. This turns on `UsePAM` too:
    /// without PAM, OpenSSH has no keyboard-interactive device on Linux and
    /// would offer the method but fail every attempt.
    pub fn kbd_interactive_auth(mut self, on: bool) -> Self {
        self.kbd_interactive_auth = on;
        self
    }

    /// Restrict logins to these users (`AllowUsers`); empty means anyone.
    pub fn allow_users<I, S>(mut self, users: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allow_users = users.into_iter().map(Into::into).collect();
        self
    }

    /// Password and keyboard-interactive authentication for
    /// [`PASSWORD_USER`], allowed beside the current user. Panics (loudly,
    /// with what to run) when not root or when `scripts/setup` has not made
    /// that user: only root's sshd can check another user's password.
    pub fn with_password_user(self) -> Self {
        require_root("sshd checks another user's password only when it runs as root");
        assert!(
            user_exists(PASSWORD_USER),
            "the password test user `{PASSWORD_USER}` does not exist: run scripts/setup (as root)"
        );
        self.password_auth(true)
            .kbd_interactive_auth(true)
            .allow_users([current_user(), PASSWORD_USER.to_string()])
    }

    /// Listen on `ip` (a loopback address such as 127.0.0.2) instead of
    /// 127.0.0.1; the client config and known_hosts then name `ip`. A test
    /// that firewalls its sshd's address this way leaves everyone else's
    /// 127.0.0.1 alone.
    pub fn listen_address(mut self, ip: Ipv4Addr) -> Self {
        self.listen = Some(ip);
        self
    }

    /// One more sshd_config line, e.g. `"AllowTcpForwarding no"`. These
    /// lines come before the fixture's own, so they win: sshd keeps the first
    /// value it reads for a keyword. (No `Match` blocks: they would swallow
    /// the fixture's lines.)
    pub fn option(mut self, line: impl Into<String>) -> Self {
        self.extra.push(line.into());
        self
    }

    /// Runs sshd inside the network namespace `ns` (one that `ip netns add`
    /// made, so `/run/netns/NS` exists), listening on port 22 of `addr`
    /// (`0.0.0.0` for every address the namespace has, as a real server
    /// does). The namespace is fresh, so port 22 is free there. Everything
    /// sshd starts, such as rockd, runs in that namespace too. Readiness is
    /// checked from inside the namespace. Give [`SshdBuilder::client_host`]
    /// when `addr` is unspecified.
    pub fn in_netns(mut self, ns: impl Into<String>, addr: IpAddr) -> Self {
        self.netns = Some(NetnsListen {
            name: ns.into(),
            addr,
        });
        self
    }

    /// The name (or address) by which the client config's `Host rocktest`
    /// reaches sshd (`HostName`), and under which known_hosts holds its host
    /// key. By default the address sshd listens on.
    pub fn client_host(mut self, host: impl Into<String>) -> Self {
        self.client_host = Some(host.into());
        self
    }

    /// Starts sshd and waits until it accepts connections. Panics with the
    /// sshd log when it cannot be started.
    pub fn start(self) -> Sshd {
        preflight();
        let dir = tempfile::Builder::new()
            .prefix("rock-sshd-")
            .tempdir()
            .expect("create the sshd fixture's temporary directory");
        assert!(
            !dir.path().to_string_lossy().contains(char::is_whitespace),
            "the temporary directory {} contains whitespace, which the fixture's \
             ssh configs don't quote; set TMPDIR to a path without spaces",
            dir.path().display()
        );
        let paths = Paths::new(dir.path());
        keygen(&paths.host_key, "rocks-test-host");
        keygen(&paths.client_key, "rocks-test-client");
        fs::copy(public_key_path(&paths.client_key), &paths.authorized_keys)
            .expect("write authorized_keys");

        let listen = self
            .netns
            .as_ref()
            .map_or(IpAddr::V4(self.ip()), |n| n.addr);
        let client_host = match (&self.client_host, listen.is_unspecified()) {
            (Some(host), _) => host.clone(),
            (None, false) => listen.to_string(),
            (None, true) => panic!(
                "sshd listens on {listen}: give SshdBuilder::client_host, the address or \
                 name the client should use"
            ),
        };
        let ns = self.netns.as_ref().map(|n| n.name.as_str());
        let mut last_log = String::new();
        let ip = self.ip();
        for _ in 0..PORT_ATTEMPTS {
            // A fresh namespace has port 22 free; on the host, any port may
            // be taken.
            let port = if ns.is_some() { 22 } else { free_port(ip) };
            fs::write(&paths.sshd_config, self.sshd_config(&paths, listen, port))
                .expect("write sshd_config");
            fs::write(&paths.log, "").expect("create the sshd log");
            let mut child = spawn_sshd(&paths, ns);
            match wait_ready(&mut child, ns, SocketAddr::new(listen, port), &paths.log) {
                Ok(()) => {
                    let sshd = Sshd {
                        child,
                        ip,
                        port,
                        listen,
                        client_host,
                        user: current_user(),
                        paths,
                        keys_made: AtomicU32::new(0),
                        dir,
                    };
                    sshd.write_client_files();
                    return sshd;
                }
                Err(Failure::PortTaken) if ns.is_none() => {
                    last_log = fs::read_to_string(&paths.log).unwrap_or_default();
                    kill_tree(child.id());
                    let _ = child.wait();
                }
                Err(Failure::PortTaken) => {
                    kill_tree(child.id());
                    let _ = child.wait();
                    panic!(
                        "sshd cannot bind port 22 in network namespace {}: is another sshd \
                         running there?\n--- sshd log ---\n{}",
                        ns.unwrap_or_default(),
                        fs::read_to_string(&paths.log).unwrap_or_default(),
                    );
                }
                Err(Failure::Other(why)) => {
                    kill_tree(child.id());
                    let _ = child.wait();
                    panic!(
                        "sshd did not start: {why}\n--- sshd log ({}) ---\n{}\n--- sshd_config ---\n{}",
                        paths.log.display(),
                        fs::read_to_string(&paths.log).unwrap_or_default(),
                        fs::read_to_string(&paths.sshd_config).unwrap_or_default(),
                    );
                }
            }
        }
        panic!(
            "sshd could not bind a free loopback port in {PORT_ATTEMPTS} attempts; last log:\n{last_log}"
        );
    }

    fn ip(&self) -> Ipv4Addr {
        self.listen.unwrap_or(Ipv4Addr::LOCALHOST)
    }

    fn sshd_config(&self, paths: &Paths, listen: IpAddr, port: u16) -> String {
        let yes_no = |on: bool| if on { "yes" } else { "no" };
        let mut c = String::from("# Written by the rocks test fixture (tests/common/sshd.rs).\n");
        for line in &self.extra {
            writeln!(c, "{line}").unwrap();
        }
        writeln!(c, "ListenAddress {listen}").unwrap();
        writeln!(c, "Port {port}").unwrap();
        writeln!(c, "HostKey {}", paths.host_key.display()).unwrap();
        writeln!(c, "AuthorizedKeysFile {}", paths.authorized_keys.display()).unwrap();
        writeln!(c, "PidFile {}", paths.pid.display()).unwrap();
        // VERBOSE: key fingerprints and connection details in the log that a
        // failing test prints.
        writeln!(c, "LogLevel VERBOSE").unwrap();
        // The temporary directory is not laid out like a home directory.
        writeln!(c, "StrictModes no").unwrap();
        writeln!(c, "UsePAM {}", yes_no(self.kbd_interactive_auth)).unwrap();
        writeln!(c, "PubkeyAuthentication yes").unwrap();
        writeln!(c, "PasswordAuthentication {}", yes_no(self.password_auth)).unwrap();
        writeln!(
            c,
            "KbdInteractiveAuthentication {}",
            yes_no(self.kbd_interactive_auth)
        )
        .unwrap();
        writeln!(c, "PermitEmptyPasswords no").unwrap();
        writeln!(c, "PrintMotd no").unwrap();
        writeln!(c, "PrintLastLog no").unwrap();
        writeln!(c, "UseDNS no").unwrap();
        writeln!(c, "X11Forwarding no").unwrap();
        writeln!(c, "AllowTcpForwarding yes").unwrap();
        // Tests open connections in bursts; no random early drops.
        writeln!(c, "MaxStartups 100").unwrap();
        if sshd_version() >= (9, 8) {
            // OpenSSH 9.8 penalises addresses whose connections fail to
            // authenticate; tests do that on purpose, all from 127.0.0.1.
            writeln!(c, "PerSourcePenalties no").unwrap();
        }
        if !self.allow_users.is_empty() {
            writeln!(c, "AllowUsers {}", self.allow_users.join(" ")).unwrap();
        }
        writeln!(c, "Subsystem sftp {SFTP_SERVER}").unwrap();
        c
    }
}

/// A running sshd; see the module documentation. Dropping it kills sshd and
/// every process that it started.
#[derive(Debug)]
pub struct Sshd {
    child: Child,
    ip: Ipv4Addr,
    port: u16,
    /// The address sshd listens on (in its namespace, if it has one).
    listen: IpAddr,
    /// `HostName` of the client config, and the known_hosts name.
    client_host: String,
    user: String,
    paths: Paths,
    /// Counts the extra keys made for the wrong-key helpers (file names).
    keys_made: AtomicU32,
    /// Last, so that it is removed after sshd is gone.
    dir: TempDir,
}

/// A process started by sshd (directly or not), as `/proc` showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Its process id.
    pub pid: u32,
    /// Its parent's process id.
    pub ppid: u32,
    /// Its command line, arguments separated by spaces.
    pub cmdline: String,
}

impl Sshd {
    /// Starts an sshd with the defaults: public-key authentication for the
    /// current user only.
    pub fn start() -> Sshd {
        Sshd::builder().start()
    }

    /// Options for a non-default sshd, then [`SshdBuilder::start`].
    pub fn builder() -> SshdBuilder {
        SshdBuilder::default()
    }

    /// The port sshd listens on: a free one of 127.0.0.1, or 22 in a
    /// network namespace.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The loopback address sshd listens on (127.0.0.1 by default; in a
    /// network namespace, 127.0.0.1 too, though sshd is not there).
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The address sshd listens on (in its namespace, if it runs in one).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.listen, self.port)
    }

    /// The host name or address the client config reaches sshd by.
    pub fn client_host(&self) -> &str {
        &self.client_host
    }

    /// The sshd listener's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The user the client config logs in as (the current user).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The fixture's temporary directory (keys, configs, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The client config with `Host rocktest`; pass it with `ssh -F`.
    pub fn ssh_config(&self) -> &Path {
        &self.paths.ssh_config
    }

    /// The known_hosts file holding sshd's host key (for `[127.0.0.1]:PORT`,
    /// or the [`SshdBuilder::client_host`] name).
    pub fn known_hosts(&self) -> &Path {
        &self.paths.known_hosts
    }

    /// The client's private key, whose public half is in authorized_keys.
    pub fn client_key(&self) -> &Path {
        &self.paths.client_key
    }

    /// The sshd_config that sshd runs with.
    pub fn sshd_config(&self) -> &Path {
        &self.paths.sshd_config
    }

    /// sshd's public host key, `ssh-ed25519 AAAA… comment`.
    pub fn host_public_key(&self) -> String {
        read_public_key(&self.paths.host_key)
    }

    /// What sshd has logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.paths.log).unwrap_or_else(|e| format!("(no sshd log: {e})"))
    }

    /// `program` (ssh, scp or sftp) with `-F <ssh_config>` as its first
    /// argument, stdin from /dev/null, and no agent or askpass inherited
    /// from the environment (a test sets them explicitly when it wants them).
    pub fn command(&self, program: &str) -> Command {
        self.command_with_config(program, &self.paths.ssh_config)
    }

    /// Like [`Sshd::command`], with another client config (`-F config`).
    pub fn command_with_config(&self, program: &str, config: &Path) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("-F")
            .arg(config)
            .stdin(Stdio::null())
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SSH_ASKPASS")
            .env_remove("SSH_ASKPASS_REQUIRE")
            .env_remove("DISPLAY");
        cmd
    }

    /// A new known_hosts file with no key for this sshd (only an unrelated
    /// host's), for `-o UserKnownHostsFile=…`: ssh must refuse an unknown
    /// host.
    pub fn known_hosts_without_key(&self) -> PathBuf {
        let key = self.new_key("unrelated-host");
        let path = self.numbered("known_hosts.unknown");
        // Some other address than ours.
        let other = if self.ip == Ipv4Addr::new(127, 0, 0, 2) {
            Ipv4Addr::new(127, 0, 0, 3)
        } else {
            Ipv4Addr::new(127, 0, 0, 2)
        };
        fs::write(&path, format!("[{other}]:{} {key}\n", self.port)).expect("write known_hosts");
        path
    }

    /// A new known_hosts file that names this sshd's address with a
    /// different key: ssh must refuse a changed host key.
    pub fn known_hosts_with_wrong_key(&self) -> PathBuf {
        let key = self.new_key("impostor-host");
        let path = self.numbered("known_hosts.changed");
        fs::write(&path, format!("{} {key}\n", self.known_hosts_name()))
            .expect("write known_hosts");
        path
    }

    /// A new client private key that is not in authorized_keys.
    pub fn unauthorized_client_key(&self) -> PathBuf {
        let path = self.numbered("unauthorized_key");
        keygen(&path, "rocks-test-unauthorized");
        path
    }

    /// A new copy of the client config with `keyword`'s value replaced (or
    /// the keyword added), for [`Sshd::command_with_config`]. Needed for
    /// keywords that accumulate, such as `IdentityFile`: `-o` on the command
    /// line would add a key, not replace the fixture's.
    pub fn ssh_config_with(&self, keyword: &str, value: &str) -> PathBuf {
        let original = fs::read_to_string(&self.paths.ssh_config).expect("read the ssh config");
        let mut replaced = false;
        let mut config = String::new();
        for line in original.lines() {
            let key = line.split_whitespace().next().unwrap_or("");
            if key.eq_ignore_ascii_case(keyword) {
                if !replaced {
                    writeln!(config, "    {keyword} {value}").unwrap();
                }
                replaced = true;
            } else {
                writeln!(config, "{line}").unwrap();
            }
        }
        if !replaced {
            writeln!(config, "    {keyword} {value}").unwrap();
        }
        let path = self.numbered("ssh_config");
        fs::write(&path, config).expect("write the ssh config variant");
        path
    }

    /// The processes sshd started and that still run: per-connection sshd
    /// processes, the sessions' shells and commands, and anything those
    /// daemonised (re-parented to the sshd listener, a subreaper).
    pub fn descendants(&self) -> Vec<Proc> {
        let table = process_table();
        let tree = subtree(&table, self.child.id());
        tree.into_iter()
            .filter(|pid| *pid != self.child.id())
            .filter_map(|pid| {
                let entry = &table[&pid];
                (entry.state != 'Z').then(|| Proc {
                    pid,
                    ppid: entry.ppid,
                    cmdline: cmdline(pid),
                })
            })
            .collect()
    }

    /// Polls [`Sshd::descendants`] until none is left, or panics after
    /// `timeout` listing those that are: for tests that check that a session
    /// leaves nothing behind.
    pub fn wait_no_descendants(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let left = self.descendants();
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes started by sshd still run after {timeout:?}: {left:#?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn write_client_files(&self) {
        let p = &self.paths;
        fs::write(
            &p.known_hosts,
            format!("{} {}\n", self.known_hosts_name(), self.host_public_key()),
        )
        .expect("write known_hosts");
        let config = format!(
            "# Written by the rocks test fixture: `ssh -F THIS_FILE rocktest` reaches its sshd.\n\
             Host rocktest\n\
             \x20   HostName {host}\n\
             \x20   Port {port}\n\
             \x20   User {user}\n\
             \x20   IdentityFile {key}\n\
             \x20   IdentitiesOnly yes\n\
             \x20   UserKnownHostsFile {known_hosts}\n\
             \x20   GlobalKnownHostsFile /dev/null\n\
             \x20   StrictHostKeyChecking yes\n\
             \x20   UpdateHostKeys no\n\
             \x20   CheckHostIP no\n\
             \x20   BatchMode yes\n\
             \x20   ControlMaster no\n\
             \x20   ControlPath none\n\
             \x20   ConnectTimeout 10\n\
             \x20   LogLevel ERROR\n",
            host = self.client_host,
            port = self.port,
            user = self.user,
            key = p.client_key.display(),
            known_hosts = p.known_hosts.display(),
        );
        fs::write(&p.ssh_config, config).expect("write the client ssh config");
    }

    /// How known_hosts names this sshd: the client's host name, plainly on
    /// port 22 and as `[host]:port` on any other.
    fn known_hosts_name(&self) -> String {
        if self.port == 22 {
            self.client_host.clone()
        } else {
            format!("[{}]:{}", self.client_host, self.port)
        }
    }

    fn numbered(&self, stem: &str) -> PathBuf {
        let n = self.keys_made.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("{stem}.{n}"))
    }

    /// A fresh ed25519 public key (the private half is thrown away).
    fn new_key(&self, comment: &str) -> String {
        let path = self.numbered("extra_key");
        keygen(&path, comment);
        read_public_key(&path)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        kill_tree(self.child.id());
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "--- sshd log ({}, port {}) ---\n{}--- end of sshd log ---",
                self.paths.log.display(),
                self.port,
                self.log()
            );
        }
    }
}

/// Where the fixture keeps its files.
#[derive(Debug)]
struct Paths {
    host_key: PathBuf,
    client_key: PathBuf,
    authorized_keys: PathBuf,
    sshd_config: PathBuf,
    pid: PathBuf,
    log: PathBuf,
    ssh_config: PathBuf,
    known_hosts: PathBuf,
}

impl Paths {
    fn new(dir: &Path) -> Paths {
        Paths {
            host_key: dir.join("host_ed25519"),
            client_key: dir.join("client_ed25519"),
            authorized_keys: dir.join("authorized_keys"),
            sshd_config: dir.join("sshd_config"),
            pid: dir.join("sshd.pid"),
            log: dir.join("sshd.log"),
            ssh_config: dir.join("ssh_config"),
            known_hosts: dir.join("known_hosts"),
        }
    }
}

/// Checks what sshd needs before starting it, so that a missing piece is
/// reported as what to do rather than as an sshd error.
fn preflight() {
    for (path, package) in [
        (SSHD, "openssh-server"),
        (SFTP_SERVER, "openssh-sftp-server"),
        ("/usr/bin/ssh-keygen", "openssh-client"),
    ] {
        assert!(
            Path::new(path).exists(),
            "{path} is missing: install {package} (run scripts/setup as root)"
        );
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 && !Path::new(PRIVSEP_DIR).is_dir() {
        // sshd running as root refuses to start without it. /run is a tmpfs,
        // so the directory scripts/setup made is gone after a reboot; on a
        // Debian system the sshd service would create it the same way.
        fs::create_dir_all(PRIVSEP_DIR)
            .and_then(|()| fs::set_permissions(PRIVSEP_DIR, fs::Permissions::from_mode(0o755)))
            .unwrap_or_else(|e| {
                panic!("sshd needs {PRIVSEP_DIR} and it cannot be made: {e}; run scripts/setup")
            });
    }
}

/// Makes an ed25519 key pair at `path` and `path.pub`, no passphrase.
fn keygen(path: &Path, comment: &str) {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .expect("run ssh-keygen (install openssh-client: scripts/setup)");
    assert!(
        out.status.success(),
        "ssh-keygen for {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `path` + ".pub" (not `with_extension`, which would replace a ".0").
fn public_key_path(private_key: &Path) -> PathBuf {
    let mut path = private_key.as_os_str().to_owned();
    path.push(".pub");
    PathBuf::from(path)
}

fn read_public_key(private_key: &Path) -> String {
    let path = public_key_path(private_key);
    let mut key = String::new();
    fs::File::open(&path)
        .and_then(|mut f| f.read_to_string(&mut key))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    key.trim().to_string()
}

/// A port that was free a moment ago. Another process may take it before
/// sshd binds it; [`SshdBuilder::start`] then tries another.
fn free_port(ip: Ipv4Addr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .expect("bind a loopback port")
        .port()
}

/// The OpenSSH version of the sshd binary, as (major, minor).
fn sshd_version() -> (u32, u32) {
    static VERSION: OnceLock<(u32, u32)> = OnceLock::new();
    *VERSION.get_or_init(|| {
        // `sshd -V` prints the version to stderr (and exits non-zero on
        // older releases that lack -V, printing it in the usage message).
        let out = Command::new(SSHD)
            .arg("-V")
            .stdin(Stdio::null())
            .output()
            .expect("run sshd -V");
        let text = String::from_utf8_lossy(&out.stderr);
        parse_openssh_version(&text)
            .unwrap_or_else(|| panic!("cannot find the OpenSSH version in `sshd -V`: {text}"))
    })
}

/// `OpenSSH_9.2p1 Debian-2, OpenSSL …` → (9, 2).
fn parse_openssh_version(text: &str) -> Option<(u32, u32)> {
    let rest = &text[text.find("OpenSSH_")? + "OpenSSH_".len()..];
    let mut numbers = rest.split(|c: char| !c.is_ascii_digit());
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((major, minor))
}

/// Starts sshd in the foreground, logging to the fixture's log file; inside
/// network namespace `ns` if given.
fn spawn_sshd(paths: &Paths, ns: Option<&str>) -> Child {
    let netns = ns.map(|name| {
        let path = Path::new(NETNS_DIR).join(name);
        fs::File::open(&path).unwrap_or_else(|e| {
            panic!(
                "open network namespace {}: {e} (make it with `ip netns add {name}`)",
                path.display()
            )
        })
    });
    let mut cmd = Command::new(SSHD);
    cmd.arg("-D")
        .arg("-f")
        .arg(&paths.sshd_config)
        .arg("-E")
        .arg(&paths.log)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure only makes async-signal-safe system calls and
    // builds io::Errors from raw OS codes (no allocation).
    unsafe {
        cmd.pre_exec(move || {
            // Only the network namespace: sshd needs no /etc/netns files.
            if let Some(ns) = &netns
                && libc::setns(std::os::fd::AsRawFd::as_raw_fd(ns), libc::CLONE_NEWNET) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // A subreaper keeps double-forked descendants in sshd's tree, so
            // that kill_tree finds them.
            if libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGTERM as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the death signal was armed.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    spawn_from_long_lived_thread(cmd)
        .unwrap_or_else(|e| panic!("start {SSHD} (install openssh-server: scripts/setup): {e}"))
}

/// Spawns `cmd` from a thread that lives as long as the test process.
///
/// The parent-death signal fires when the *thread* that forked the child
/// ends, not the process; test threads end with each test, and a fixture
/// may be made on a short-lived thread (a `spawn_blocking`, a helper
/// thread) and outlive it.
fn spawn_from_long_lived_thread(cmd: Command) -> io::Result<Child> {
    type Job = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<mpsc::Sender<Job>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        thread::Builder::new()
            .name("sshd-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the sshd spawner thread");
        tx
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    spawner
        .send((cmd, reply_tx))
        .expect("the sshd spawner thread is gone");
    reply_rx
        .recv()
        .expect("the sshd spawner thread did not answer")
}

enum Failure {
    /// The port was taken between [`free_port`] and sshd's bind.
    PortTaken,
    Other(String),
}

/// Waits until sshd logs that it listens on `addr` and answers a connection
/// with an SSH banner (from inside network namespace `ns`, if given).
fn wait_ready(
    child: &mut Child,
    ns: Option<&str>,
    addr: SocketAddr,
    log: &Path,
) -> Result<(), Failure> {
    let listening = format!("Server listening on {} port {}.", addr.ip(), addr.port());
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = fs::read_to_string(log).unwrap_or_default();
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Failure::Other(e.to_string()))?
        {
            return Err(if text.contains("Address already in use") {
                Failure::PortTaken
            } else {
                Failure::Other(format!("sshd exited with {status}"))
            });
        }
        if text.contains(&listening) {
            break;
        }
        if Instant::now() >= deadline {
            return Err(Failure::Other(format!(
                "sshd did not listen within {START_TIMEOUT:?}"
            )));
        }
        thread::sleep(Duration::from_millis(10));
    }
    // Our sshd holds the port; check that it serves it. The banner comes
    // from the per-connection sshd it forks and re-executes.
    let probe = if addr.ip().is_unspecified() {
        SocketAddr::from((Ipv4Addr::LOCALHOST, addr.port()))
    } else {
        addr
    };
    let banner = match ns {
        None => read_banner(probe),
        Some(ns) => read_banner_in(ns, probe),
    }
    .map_err(|e| Failure::Other(format!("sshd listens but did not send a banner: {e}")))?;
    if !banner.starts_with("SSH-2.0-OpenSSH") {
        return Err(Failure::Other(format!("unexpected banner {banner:?}")));
    }
    // Let that probe's sshd process exit, so that a test sees a clean tree.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !subtree(&process_table(), child.id())
        .iter()
        .all(|pid| *pid == child.id())
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// [`read_banner`] from a thread that joins network namespace `ns` first
/// (a thread may change its own network namespace; the rest of the test
/// process stays where it is).
fn read_banner_in(ns: &str, addr: SocketAddr) -> io::Result<String> {
    let path = Path::new(NETNS_DIR).join(ns);
    thread::spawn(move || {
        let file = fs::File::open(&path)?;
        // SAFETY: setns on a descriptor we own; only this thread moves.
        if unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&file), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        read_banner(addr)
    })
    .join()
    .map_err(|_| io::Error::other("the banner probe thread panicked"))?
}

fn read_banner(addr: SocketAddr) -> io::Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut banner = Vec::new();
    let mut byte = [0u8; 1];
    while banner.len() < 255 {
        if stream.read(&mut byte)? == 0 {
            break;
        }
        if byte[0] == b'\n' {
            break;
        }
        banner.push(byte[0]);
    }
    Ok(String::from_utf8_lossy(&banner).trim_end().to_string())
}

/// One line of `/proc/PID/stat`, the parts the fixture needs.
struct ProcEntry {
    ppid: u32,
    state: char,
}

/// Every process's parent and state, read from `/proc`.
fn process_table() -> BTreeMap<u32, ProcEntry> {
    let mut table = BTreeMap::new();
    let Ok(entries) = fs::read_dir("/proc") else {
        return table;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // The process may be gone already; that is not an error.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // "PID (COMM) STATE PPID …"; COMM may contain spaces and parentheses.
        let Some(after) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            continue;
        };
        let mut fields = after.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next());
        let ppid = fields.next().and_then(|s| s.parse().ok());
        if let (Some(state), Some(ppid)) = (state, ppid) {
            table.insert(pid, ProcEntry { ppid, state });
        }
    }
    table
}

/// `root` and all its descendants in `table`.
fn subtree(table: &BTreeMap<u32, ProcEntry>, root: u32) -> BTreeSet<u32> {
    let mut tree = BTreeSet::from([root]);
    loop {
        let before = tree.len();
        for (pid, entry) in table {
            if tree.contains(&entry.ppid) {
                tree.insert(*pid);
            }
        }
        if tree.len() == before {
            return tree;
        }
    }
}

fn cmdline(pid: u32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| {
            String::from_utf8_lossy(&raw)
                .split('\0')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Stops `root` and everything below it, then kills them all.
///
/// Stopping first means no process in the tree can fork or exit (orphaning
/// its children) while the tree is being listed; the listing repeats until
/// it finds nothing new. SIGKILL then ends stopped processes too.
fn kill_tree(root: u32) {
    let signal = |pid: u32, sig: libc::c_int| {
        // SAFETY: kill has no memory-safety preconditions; a pid that is
        // already gone gives ESRCH, which is fine.
        unsafe { libc::kill(pid as libc::pid_t, sig) };
    };
    let mut stopped = BTreeSet::new();
    loop {
        let tree = subtree(&process_table(), root);
        let new: Vec<u32> = tree.difference(&stopped).copied().collect();
        if new.is_empty() {
            break;
        }
        for pid in new {
            signal(pid, libc::SIGSTOP);
            stopped.insert(pid);
        }
    }
    for pid in &stopped {
        signal(*pid, libc::SIGKILL);
    }
}
