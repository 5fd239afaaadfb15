//! The SSH bootstrap against a real OpenSSH sshd, with a stub rockd: a small
//! sh script that reads the boot request and answers `rockd-ready`.
//!
//! Covers what the user sees: success with a key, refusal of unknown,
//! changed and unauthorised keys, a password asked exactly once (with
//! OpenSSH's prompt) and kept for the inner ssh, wrong passwords and
//! passphrases asked again as often as OpenSSH asks (and only the right
//! one kept), keyboard-interactive through PAM, and a missing rockd named
//! with every path tried.

mod common;

use std::collections::VecDeque;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{PASSWORD, PASSWORD_USER, Sshd, current_user, require_root, user_exists};
use rock::boot::BootRequest;
use rock::proto::{SessionId, SessionKey};
use rock::ssh::bootstrap::{BootstrapError, Bootstrapped, RockdCommand, bootstrap};
use rock::ssh::prompt::{NoPrompter, PromptError, Prompter};
use rock::ssh::target::BootstrapTarget;
use zeroize::Zeroizing;

/// The port the stub rockd claims to listen on.
const STUB_PORT: u16 = 4242;

/// What ssh prints between password tries.
const TRY_AGAIN: &str = "Permission denied, please try again.";

/// A Prompter that answers from a script and records what it was asked
/// and shown.
#[derive(Default)]
struct Scripted {
    answers: Mutex<VecDeque<String>>,
    asked: Mutex<Vec<String>>,
    shown: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(answers: &[&str]) -> Arc<Scripted> {
        Arc::new(Scripted {
            answers: Mutex::new(answers.iter().map(|a| a.to_string()).collect()),
            ..Scripted::default()
        })
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().expect("lock").clone()
    }

    fn shown(&self) -> Vec<String> {
        self.shown.lock().expect("lock").clone()
    }

    fn next(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        self.asked.lock().expect("lock").push(prompt.to_owned());
        match self.answers.lock().expect("lock").pop_front() {
            Some(answer) => Ok(Zeroizing::new(answer)),
            None => Err(PromptError::Cancelled {
                what: prompt.to_owned(),
            }),
        }
    }
}

impl Prompter for Scripted {
    fn password(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        self.next(prompt)
    }

    fn answer(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        self.next(prompt)
    }

    fn show(&self, message: &str) {
        self.shown.lock().expect("lock").push(message.to_owned());
    }
}

fn request() -> BootRequest {
    let mut key = [0u8; 32];
    for (i, b) in key.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37).wrapping_add(11);
    }
    BootRequest {
        id: SessionId([0x5a; 16]),
        key: SessionKey(key),
    }
}

/// A directory any local user can read, for stubs run as another user.
fn shared_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("rock-bootstrap-")
        .tempdir()
        .expect("tempdir");
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

/// Writes an executable stub rockd into `dir`. It prints shell-rc-like
/// noise, reads the four request lines, optionally records them and its
/// arguments in `record`, and answers ready.
fn stub_rockd(dir: &Path, record: Option<&Path>) -> PathBuf {
    let save = match record {
        Some(path) => format!(
            "printf '%s\\n' \"$head\" \"$id\" \"$key\" \"$end\" \"args:$*\" > '{}'\n",
            path.display()
        ),
        None => String::new(),
    };
    let script = format!(
        "#!/bin/sh\n\
         echo 'Welcome to the test host (shell rc noise)'\n\
         read -r head; read -r id; read -r key; read -r end\n\
         if [ \"$head\" != 'rock-boot 1' ] || [ \"$end\" != end ]; then\n\
         \x20 echo \"rockd-error bad request: $head\"; exit 1\n\
         fi\n\
         {save}\
         echo 'rockd-ready 1 version 0.0.0-stub proto 1-1 port {STUB_PORT} extra field'\n"
    );
    let path = dir.join("rockd-stub");
    fs::write(&path, script).expect("write the stub rockd");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod the stub");
    path
}

fn stub_command(stub: &Path, args: &[&str]) -> RockdCommand {
    RockdCommand {
        candidates: vec![stub.display().to_string()],
        args: args.iter().map(|a| a.to_string()).collect(),
    }
}

/// A target for the fixture's user and key, with nothing from the
/// environment (no agent, no default files).
fn target(sshd: &Sshd) -> BootstrapTarget {
    let mut t = BootstrapTarget::new("rocktest", sshd.user(), "127.0.0.1", sshd.port());
    t.identity_files = vec![sshd.client_key().to_path_buf()];
    t.identities_only = true;
    t.known_hosts_files = vec![sshd.known_hosts().to_path_buf()];
    t.batch_mode = true;
    t.agent_socket = None;
    t.connect_timeout = Some(Duration::from_secs(10));
    t
}

/// A target for the password user: an unauthorised key first (so that
/// publickey is tried and fails, as it would for most users), then
/// prompts.
fn password_target(sshd: &Sshd) -> BootstrapTarget {
    let mut t = target(sshd);
    t.user = PASSWORD_USER.to_owned();
    t.identity_files = vec![sshd.unauthorized_client_key()];
    t.batch_mode = false;
    t
}

/// sshd with password authentication (no PAM, no keyboard-interactive)
/// for the password user: OpenSSH's `user@host's password: ` path.
fn password_sshd() -> Sshd {
    require_root("sshd checks another user's password only when it runs as root");
    assert!(
        user_exists(PASSWORD_USER),
        "the password test user `{PASSWORD_USER}` does not exist: run scripts/setup (as root)"
    );
    Sshd::builder()
        .password_auth(true)
        .allow_users([current_user(), PASSWORD_USER.to_owned()])
        .start()
}

async fn run(
    target: &BootstrapTarget,
    rockd: &RockdCommand,
    prompter: Arc<dyn Prompter>,
) -> Result<Bootstrapped, BootstrapError> {
    tokio::time::timeout(
        Duration::from_secs(60),
        bootstrap(target, rockd, &request(), prompter),
    )
    .await
    .expect("the bootstrap finished within 60 s")
}

/// The host key's fingerprint as ssh-keygen prints it.
fn host_fingerprint(sshd: &Sshd, dir: &Path) -> String {
    let path = dir.join("host.pub");
    fs::write(&path, sshd.host_public_key()).expect("write host.pub");
    let out = Command::new("ssh-keygen")
        .arg("-lf")
        .arg(&path)
        .output()
        .expect("run ssh-keygen -l");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(1)
        .unwrap_or_else(|| panic!("no fingerprint in {text:?}"))
        .to_owned()
}

/// Makes a key pair at `dir/name` with `ssh-keygen` (`-N passphrase`).
fn keygen(dir: &Path, name: &str, kind: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", kind, "-N", passphrase, "-C", name, "-f"])
        .arg(&path)
        .output()
        .expect("run ssh-keygen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    path
}

/// Lets `key` log in to the fixture's sshd, beside the fixture's own key.
fn authorize(sshd: &Sshd, key: &Path) {
    let mut public = key.as_os_str().to_owned();
    public.push(".pub");
    let line = fs::read_to_string(PathBuf::from(public)).expect("read the public key");
    let authorized = sshd.dir().join("authorized_keys");
    let mut keys = fs::read_to_string(&authorized).expect("read authorized_keys");
    keys.push_str(&line);
    fs::write(&authorized, keys).expect("write authorized_keys");
}

/// An ssh-agent on its own socket, killed when dropped.
struct Agent {
    child: std::process::Child,
    socket: PathBuf,
}

impl Agent {
    fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("start ssh-agent");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "ssh-agent did not start"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { child, socket }
    }

    fn add(&self, key: &Path) {
        let out = Command::new("ssh-add")
            .arg(key)
            .env("SSH_AUTH_SOCK", &self.socket)
            .output()
            .expect("run ssh-add");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn encrypted_key_passphrase_is_asked_once_and_only_for_an_accepted_key() {
    let sshd = Sshd::start();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    // Refused by the server: its passphrase must never be asked.
    let refused = keygen(dir.path(), "refused_ed25519", "ed25519", "refused-pass");
    // Accepted, RSA: signed with SHA-2 or OpenSSH 8.8+ refuses it.
    let accepted = keygen(dir.path(), "accepted_rsa", "rsa", "rsa-pass");
    authorize(&sshd, &accepted);
    let mut t = target(&sshd);
    t.identity_files = vec![refused, accepted.clone()];
    t.batch_mode = false;
    let prompter = Scripted::new(&["rsa-pass", "rsa-pass"]);

    let done = run(&t, &stub_command(&stub, &[]), prompter.clone())
        .await
        .unwrap_or_else(|e| panic!("bootstrap failed: {e}\n{}", sshd.log()));

    assert_eq!(
        prompter.asked(),
        [format!(
            "Enter passphrase for key '{}': ",
            accepted.display()
        )]
    );
    assert!(done.secrets.password.is_none());
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());
}

#[tokio::test]
async fn a_wrong_passphrase_is_asked_again_and_only_the_right_one_is_kept() {
    let sshd = Sshd::start();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let key = keygen(dir.path(), "accepted_ed25519", "ed25519", "right-pass");
    authorize(&sshd, &key);
    let mut t = target(&sshd);
    t.identity_files = vec![key.clone()];
    t.batch_mode = false;
    let prompter = Scripted::new(&["wrong-pass", "right-pass"]);

    let done = run(&t, &stub_command(&stub, &[]), prompter.clone())
        .await
        .unwrap_or_else(|e| panic!("the second try must unlock the key: {e}\n{}", sshd.log()));

    let prompt = format!("Enter passphrase for key '{}': ", key.display());
    assert_eq!(prompter.asked(), [prompt.clone(), prompt]);
    let (path, passphrase) = done.secrets.key_passphrase.expect("the passphrase is kept");
    assert_eq!(path, key);
    assert_eq!(passphrase.as_str(), "right-pass", "never the wrong one");
}

#[tokio::test]
async fn three_wrong_passphrases_move_on_to_the_next_key() {
    let sshd = Sshd::start();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let locked = keygen(dir.path(), "locked_ed25519", "ed25519", "right-pass");
    authorize(&sshd, &locked);
    let mut t = target(&sshd);
    // The fixture's own key, unencrypted and authorised, comes second.
    t.identity_files = vec![locked.clone(), sshd.client_key().to_path_buf()];
    t.batch_mode = false;
    // A fourth answer would be right: it must never be asked for.
    let prompter = Scripted::new(&["wrong-1", "wrong-2", "wrong-3", "right-pass"]);

    let done = run(&t, &stub_command(&stub, &[]), prompter.clone())
        .await
        .unwrap_or_else(|e| panic!("the second key must log in: {e}\n{}", sshd.log()));

    let prompt = format!("Enter passphrase for key '{}': ", locked.display());
    assert_eq!(prompter.asked(), [prompt.clone(), prompt.clone(), prompt]);
    assert!(
        done.secrets.key_passphrase.is_none(),
        "no wrong passphrase kept"
    );

    // An empty answer gives up on the key at once, as ssh does.
    let prompter = Scripted::new(&["", "right-pass"]);
    let done = run(&t, &stub_command(&stub, &[]), prompter.clone())
        .await
        .unwrap_or_else(|e| panic!("the second key must log in: {e}\n{}", sshd.log()));
    assert_eq!(prompter.asked().len(), 1, "{:?}", prompter.asked());
    assert!(done.secrets.key_passphrase.is_none());
}

#[tokio::test]
async fn agent_keys_authenticate_rsa_with_sha2() {
    let sshd = Sshd::start();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let rsa = keygen(dir.path(), "agent_rsa", "rsa", "");
    authorize(&sshd, &rsa);
    let agent = Agent::start(dir.path());
    agent.add(&rsa);
    let mut t = target(&sshd);
    t.identity_files = vec![sshd.unauthorized_client_key()];
    t.identities_only = false;
    t.agent_socket = Some(agent.socket.clone());

    run(&t, &stub_command(&stub, &[]), Arc::new(NoPrompter))
        .await
        .unwrap_or_else(|e| panic!("bootstrap failed: {e}\n{}", sshd.log()));
    assert!(sshd.log().contains("Accepted publickey"), "{}", sshd.log());

    // IdentitiesOnly: the agent's key is not among the files, so unused.
    t.identities_only = true;
    let err = run(&t, &stub_command(&stub, &[]), Arc::new(NoPrompter))
        .await
        .expect_err("IdentitiesOnly must keep the agent's other keys out");
    assert!(matches!(err, BootstrapError::AuthFailed(_)), "{err:?}");
}

#[tokio::test]
async fn key_authentication_starts_rockd_and_hands_it_the_key() {
    let sshd = Sshd::start();
    let dir = shared_dir();
    let record = dir.path().join("received");
    let stub = stub_rockd(dir.path(), Some(&record));
    let rockd = stub_command(&stub, &["--port-range", "40000-41000", "it's $(odd)"]);

    let done = run(&target(&sshd), &rockd, Arc::new(NoPrompter))
        .await
        .unwrap_or_else(|e| panic!("bootstrap failed: {e}\n{}", sshd.log()));

    assert_eq!(done.ready.port, STUB_PORT);
    assert_eq!(done.ready.version, "0.0.0-stub");
    assert_eq!(done.peer_addr, Some(sshd.addr()));
    assert!(done.secrets.password.is_none());
    let received = fs::read_to_string(&record).expect("the stub recorded the request");
    let mut expected = request().encode();
    expected.push_str("args:--port-range 40000-41000 it's $(odd)\n");
    assert_eq!(received, expected);
}

#[tokio::test]
async fn unknown_host_key_is_refused_with_fingerprint_and_advice() {
    let sshd = Sshd::start();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let mut t = target(&sshd);
    t.known_hosts_files = vec![sshd.known_hosts_without_key()];

    let err = run(&t, &stub_command(&stub, &[]), Arc::new(NoPrompter))
        .await
        .expect_err("an unknown host key must be refused");

    assert!(
        matches!(err, BootstrapError::HostKeyUnknown { .. }),
        "{err:?}"
    );
    let text = err.to_string();
    eprintln!("{text}");
    let fingerprint = host_fingerprint(&sshd, dir.path());
    assert!(fingerprint.starts_with("SHA256:"), "{fingerprint}");
    assert!(text.contains(&fingerprint), "{text}");
    assert!(text.contains("ssh rocktest"), "{text}");
    assert!(
        text.contains(&format!("[127.0.0.1]:{}", sshd.port())),
        "{text}"
    );
    assert_eq!(err.exit_code(), 255);
    assert!(
        !sshd.log().contains("Accepted"),
        "nobody may log in to an unknown host:\n{}",
        sshd.log()
    );
}

#[tokio::test]
async fn changed_host_key_is_refused_loudly() {
    let sshd = Sshd::start();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let mut t = target(&sshd);
    let wrong = sshd.known_hosts_with_wrong_key();
    t.known_hosts_files = vec![wrong.clone()];

    let err = run(&t, &stub_command(&stub, &[]), Arc::new(NoPrompter))
        .await
        .expect_err("a changed host key must be refused");

    match &err {
        BootstrapError::HostKeyChanged { file, line, .. } => {
            assert_eq!(file, &wrong);
            assert_eq!(*line, 1);
        }
        other => panic!("expected HostKeyChanged, got {other:?}"),
    }
    let text = err.to_string();
    eprintln!("{text}");
    assert!(
        text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{text}"
    );
    assert!(text.contains(&format!("{}:1", wrong.display())), "{text}");
    assert!(text.contains("ssh-keygen"), "{text}");
    assert!(text.contains("-R"), "{text}");
    assert!(
        text.contains(&host_fingerprint(&sshd, dir.path())),
        "{text}"
    );
}

#[tokio::test]
async fn unauthorized_key_fails_authentication() {
    let sshd = Sshd::start();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let mut t = target(&sshd);
    let key = sshd.unauthorized_client_key();
    t.identity_files = vec![key.clone()];

    let err = run(&t, &stub_command(&stub, &[]), Arc::new(NoPrompter))
        .await
        .expect_err("a key not in authorized_keys must fail");

    assert!(matches!(err, BootstrapError::AuthFailed(_)), "{err:?}");
    let text = err.to_string();
    eprintln!("{text}");
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains(&key.display().to_string()), "{text}");
    assert_eq!(err.exit_code(), 255);
}

#[tokio::test]
async fn password_is_asked_once_with_openssh_prompt_and_kept() {
    let sshd = password_sshd();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let prompter = Scripted::new(&[PASSWORD]);

    let done = run(
        &password_target(&sshd),
        &stub_command(&stub, &[]),
        prompter.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("bootstrap failed: {e}\n{}", sshd.log()));

    assert_eq!(
        prompter.asked(),
        [format!("{PASSWORD_USER}@127.0.0.1's password: ")]
    );
    let password = done.secrets.password.expect("the typed password is kept");
    assert_eq!(password.as_str(), PASSWORD);
    assert_eq!(done.ready.port, STUB_PORT);
}

#[tokio::test]
async fn a_wrong_password_is_asked_again_and_only_the_right_one_is_kept() {
    let sshd = password_sshd();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let prompter = Scripted::new(&["not-the-password", PASSWORD]);

    let done = run(
        &password_target(&sshd),
        &stub_command(&stub, &[]),
        prompter.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("the second try must log in: {e}\n{}", sshd.log()));

    let prompt = format!("{PASSWORD_USER}@127.0.0.1's password: ");
    assert_eq!(prompter.asked(), [prompt.clone(), prompt]);
    assert_eq!(prompter.shown(), [TRY_AGAIN], "ssh's words between tries");
    let kept = done
        .secrets
        .password
        .expect("the password that worked is kept");
    assert_eq!(kept.as_str(), PASSWORD, "never the refused one");
}

#[tokio::test]
async fn wrong_passwords_are_asked_three_times_as_ssh_does_then_refused() {
    let sshd = password_sshd();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    // A fourth answer would be right: it must never be asked for.
    let prompter = Scripted::new(&["wrong-1", "wrong-2", "wrong-3", PASSWORD]);

    let err = run(
        &password_target(&sshd),
        &stub_command(&stub, &[]),
        prompter.clone(),
    )
    .await
    .expect_err("three wrong passwords must fail");

    assert!(matches!(err, BootstrapError::AuthFailed(_)), "{err:?}");
    assert_eq!(prompter.asked().len(), 3, "{:?}", prompter.asked());
    assert_eq!(prompter.shown(), [TRY_AGAIN, TRY_AGAIN]);
    let text = err.to_string();
    assert!(text.contains("permission denied"), "{text}");
    assert!(text.contains("password (3 tries)"), "{text}");
    assert_eq!(err.exit_code(), 255);
}

#[tokio::test]
async fn number_of_password_prompts_bounds_the_tries() {
    let sshd = password_sshd();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let mut t = password_target(&sshd);
    t.number_of_password_prompts = 1;
    let prompter = Scripted::new(&["not-the-password", PASSWORD]);

    let err = run(&t, &stub_command(&stub, &[]), prompter.clone())
        .await
        .expect_err("NumberOfPasswordPrompts 1: one try");

    assert!(matches!(err, BootstrapError::AuthFailed(_)), "{err:?}");
    assert_eq!(prompter.asked().len(), 1, "{:?}", prompter.asked());
    assert!(prompter.shown().is_empty(), "{:?}", prompter.shown());
    assert!(err.to_string().contains("password"), "{err}");

    t.number_of_password_prompts = 0;
    let prompter = Scripted::new(&[PASSWORD]);
    run(&t, &stub_command(&stub, &[]), prompter.clone())
        .await
        .expect_err("NumberOfPasswordPrompts 0: nothing asked");
    assert!(prompter.asked().is_empty(), "{:?}", prompter.asked());
}

/// Answers every prompt with the same wrong secret, forever, as a replay
/// of a stale password would if it were asked in a loop.
struct Stubborn {
    asked: Mutex<usize>,
}

impl Prompter for Stubborn {
    fn password(&self, _prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        *self.asked.lock().expect("lock") += 1;
        Ok(Zeroizing::new("always-wrong".to_owned()))
    }

    fn answer(&self, prompt: &str) -> Result<Zeroizing<String>, PromptError> {
        self.password(prompt)
    }

    fn show(&self, _message: &str) {}
}

#[tokio::test]
async fn a_prompter_that_always_answers_is_asked_a_bounded_number_of_times() {
    // Keyboard-interactive (PAM) and password, both with a wrong answer.
    let sshd = Sshd::builder().with_password_user().start();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let prompter = Arc::new(Stubborn {
        asked: Mutex::new(0),
    });

    let err = run(
        &password_target(&sshd),
        &stub_command(&stub, &[]),
        prompter.clone(),
    )
    .await
    .expect_err("a wrong password must fail");
    eprintln!("{err}");

    // At most three keyboard-interactive tries and three password tries,
    // as ssh (the server may hang up sooner: sshd's MaxAuthTries).
    let asked = *prompter.asked.lock().expect("lock");
    eprintln!("asked {asked} times");
    assert!((1..=6).contains(&asked), "asked {asked} times");
}

#[tokio::test]
async fn a_wrong_keyboard_interactive_password_is_asked_again() {
    let sshd = Sshd::builder().with_password_user().start();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let prompter = Scripted::new(&["not-the-password", PASSWORD]);

    let done = run(
        &password_target(&sshd),
        &stub_command(&stub, &[]),
        prompter.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("the second try must log in: {e}\n{}", sshd.log()));

    let asked = prompter.asked();
    assert_eq!(asked.len(), 2, "{asked:?}");
    for prompt in &asked {
        assert!(
            prompt.starts_with(&format!("({PASSWORD_USER}@127.0.0.1) ")),
            "keyboard-interactive both times: {asked:?}"
        );
    }
    assert!(
        prompter.shown().is_empty(),
        "ssh shows nothing between keyboard-interactive tries"
    );
    let kept = done
        .secrets
        .password
        .expect("the password that worked is kept");
    assert_eq!(kept.as_str(), PASSWORD);
}

#[tokio::test]
async fn batch_mode_never_prompts() {
    let sshd = password_sshd();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let prompter = Scripted::new(&[PASSWORD]);
    let mut t = password_target(&sshd);
    t.batch_mode = true;

    let err = run(&t, &stub_command(&stub, &[]), prompter.clone())
        .await
        .expect_err("no password may be typed under BatchMode");

    assert!(matches!(err, BootstrapError::AuthFailed(_)), "{err:?}");
    assert!(prompter.asked().is_empty(), "{:?}", prompter.asked());
    assert!(err.to_string().contains("BatchMode"), "{err}");
}

#[tokio::test]
async fn keyboard_interactive_password_is_asked_once_and_kept() {
    let sshd = Sshd::builder().with_password_user().start();
    let dir = shared_dir();
    let stub = stub_rockd(dir.path(), None);
    let prompter = Scripted::new(&[PASSWORD]);

    let done = run(
        &password_target(&sshd),
        &stub_command(&stub, &[]),
        prompter.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("bootstrap failed: {e}\n{}", sshd.log()));

    let asked = prompter.asked();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(
        asked[0].starts_with(&format!("({PASSWORD_USER}@127.0.0.1) ")),
        "{asked:?}"
    );
    let password = done.secrets.password.expect("the typed password is kept");
    assert_eq!(password.as_str(), PASSWORD);
}

#[tokio::test]
async fn missing_rockd_lists_every_candidate_tried() {
    let sshd = Sshd::start();
    let dir = shared_dir();
    let missing = dir.path().join("no-such-dir/rockd");
    let rockd = RockdCommand {
        candidates: vec![
            missing.display().to_string(),
            "rockd-not-installed-anywhere".to_owned(),
            "~/.rock-test-missing/bin/rockd".to_owned(),
        ],
        args: vec![],
    };

    let err = run(&target(&sshd), &rockd, Arc::new(NoPrompter))
        .await
        .expect_err("a missing rockd must be reported");

    let home = dirs::home_dir().expect("the remote user is us: same home");
    match &err {
        BootstrapError::RockdNotFound { tried, .. } => assert_eq!(
            tried,
            &[
                missing.display().to_string(),
                "rockd-not-installed-anywhere (on PATH)".to_owned(),
                home.join(".rock-test-missing/bin/rockd")
                    .display()
                    .to_string(),
            ]
        ),
        other => panic!("expected RockdNotFound, got {other:?}"),
    }
    let text = err.to_string();
    eprintln!("{text}");
    assert!(text.contains(&missing.display().to_string()), "{text}");
    assert!(text.contains("install"), "{text}");
}

#[tokio::test]
async fn rockd_error_line_is_reported_with_its_message() {
    let sshd = Sshd::start();
    let dir = shared_dir();
    let path = dir.path().join("rockd-failing");
    fs::write(
        &path,
        "#!/bin/sh\necho 'cannot bind' >&2\necho 'rockd-error cannot listen: Address in use'\nexit 1\n",
    )
    .expect("write the failing stub");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");

    let err = run(
        &target(&sshd),
        &stub_command(&path, &[]),
        Arc::new(NoPrompter),
    )
    .await
    .expect_err("rockd's failure must be reported");

    match &err {
        BootstrapError::RockdFailed { message, .. } => {
            assert_eq!(message, "cannot listen: Address in use");
        }
        other => panic!("expected RockdFailed, got {other:?}"),
    }
}

#[tokio::test]
async fn unreachable_port_names_host_and_port() {
    let sshd = Sshd::start();
    let mut t = target(&sshd);
    // A port nobody listens on: bind one, then let it go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port();
    t.port = port;
    let rockd = RockdCommand::with_defaults(None, vec![]);

    let err = run(&t, &rockd, Arc::new(NoPrompter))
        .await
        .expect_err("nothing listens there");

    assert!(matches!(err, BootstrapError::Unreachable { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1 port {port}")),
        "{err}"
    );
}
