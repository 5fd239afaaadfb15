//! `rock -d` on the local side: everything between the user's own ssh,
//! scp, sftp, rsync or git and the rock link to rockd.
//!
//! * [`launch`] — the sequence: understand the command, resolve, bootstrap
//!   rockd, run the command through the session, relay, exit status.
//! * [`job`] — rock's place in the shell's job: the front process the
//!   shell waits for and the worker that carries the session, giving the
//!   terminal back early (`ssh -f`, an end still to deliver), job control
//!   and the signals that end a session.
//! * [`cmdline`] — understands the command after `rock -d` and rewrites it
//!   to carry its transport through rock.
//! * [`links`] — how new links reach rockd (direct, ssh, auto) and the
//!   dialer each mode uses.
//! * [`further`] — a command's ssh connections after its first, each in a
//!   session of its own.
//! * [`control`] — rock -d's requests on the control socket: the inner
//!   ssh's connection, askpass, `rock status`.
//! * [`helper`] — the proxy and askpass helper modes of the rock binary.
//! * [`fdpass`] — passing a descriptor with SCM_RIGHTS.
//! * [`notice`] — the terminal title that shows a suspended session.

pub mod cmdline;
pub mod control;
pub mod fdpass;
pub mod further;
pub mod helper;
pub mod job;
pub mod launch;
pub mod links;
pub mod notice;
