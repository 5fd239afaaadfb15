//! The sign of life of a suspended session: once the link has been down
//! for a few seconds, the terminal's title says so ("rock: host — link down
//! 12 s, reconnecting"), updated every second; when the link is back the
//! title is restored.
//!
//! Only the title changes, through OSC 2, which terminals never draw in
//! the text area, so full-screen programs are not disturbed. While the
//! link is down nothing else writes to the terminal (the remote end is
//! unreachable). The title is pushed on the terminal's title stack first
//! (`CSI 22;0 t`) and popped on restore (`CSI 23;0 t`); a terminal without
//! a stack is left with an empty title instead. It is written only when
//! rock's standard error is a terminal, through a descriptor of its own
//! opened non-blocking, so a terminal stopped with ^S can cost an update
//! but never stall the relay.
//!
//! Nothing is written while rock's job is not the terminal's foreground
//! job (in the background, or stopped with `~^Z`): the terminal is the
//! shell's then.
//!
//! Each escape sequence goes out in one `write`. A restore that lands
//! while ssh is writing replayed output could split one of the program's
//! own escape sequences; it happens at most once per outage, right as the
//! link returns.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

use crate::relay::{StatusWatch, suspended_for};

/// How long the link must have been down before the title shows it.
pub const SHOW_AFTER: Duration = Duration::from_secs(3);
/// How often the title is updated while it shows.
const UPDATE_EVERY: Duration = Duration::from_secs(1);

/// The title for a link to `host` down for `down`.
pub fn title(host: &str, down: Duration) -> String {
    format!(
        "rock: {host} — link down {} s, reconnecting",
        down.as_secs()
    )
}

/// OSC 2 setting the title to `text` (control characters removed).
fn set_title(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| !c.is_control()).collect();
    format!("\x1b]2;{clean}\x07").into_bytes()
}

/// Save the title on the stack, then set ours.
fn first_title(text: &str) -> Vec<u8> {
    let mut out = b"\x1b[22;0t".to_vec();
    out.extend(set_title(text));
    out
}

/// Clear ours, then restore the saved one where there is a stack.
const RESTORE: &[u8] = b"\x1b]2;\x07\x1b[23;0t";

/// The terminal rock's standard error is, opened anew and non-blocking;
/// `None` if standard error is not a terminal.
pub fn terminal() -> Option<File> {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDERR_FILENO) } != 1 {
        return None;
    }
    let mut buf = [0 as libc::c_char; 256];
    // SAFETY: buf is valid for its length, which is passed.
    let rc = unsafe { libc::ttyname_r(libc::STDERR_FILENO, buf.as_mut_ptr(), buf.len()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: ttyname_r succeeded, so buf holds a NUL-terminated path.
    let path = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    let path = std::path::Path::new(std::ffi::OsStr::from_bytes(path.to_bytes()));
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_NONBLOCK)
        .open(path)
        .inspect_err(|e| tracing::debug!("no sign of life: cannot open {}: {e}", path.display()))
        .ok()
}

/// The title while it is ours: restored when dropped, even when rock ends
/// while the link is down.
struct Title<W: Write> {
    out: W,
    shown: bool,
}

impl<W: Write> Title<W> {
    fn show(&mut self, text: &str) {
        let bytes = if self.shown {
            set_title(text)
        } else {
            first_title(text)
        };
        // A full terminal buffer costs this update, nothing more.
        if self.out.write(&bytes).is_ok_and(|n| n == bytes.len()) {
            self.shown = true;
        }
    }

    fn restore(&mut self) {
        if self.shown && self.out.write(RESTORE).is_ok() {
            self.shown = false;
        }
    }
}

impl<W: Write> Drop for Title<W> {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Whether this process's group is the foreground job of the terminal
/// `tty` (or `tty` is not rock's controlling terminal, where jobs do not
/// apply). A job in the background (or stopped, after `~^Z`) leaves the
/// terminal to the shell: it would not draw there, and with `stty tostop`
/// a write would stop it.
fn in_foreground(tty: BorrowedFd<'_>) -> bool {
    // SAFETY: tcgetpgrp and getpgrp only read the process's state.
    let (foreground, ours) = unsafe { (libc::tcgetpgrp(tty.as_raw_fd()), libc::getpgrp()) };
    foreground == -1 || foreground == ours
}

/// Shows the session to `host` as down on `out` while `status` says it is
/// suspended for longer than [`SHOW_AFTER`], whenever rock's job is in the
/// terminal's foreground; returns when the relay ends.
pub async fn run(host: String, mut status: StatusWatch, out: impl Write + AsFd) {
    let mut title = Title { out, shown: false };
    loop {
        let now = tokio::time::Instant::now().into_std();
        let down = suspended_for(&status.borrow(), now);
        let ours = in_foreground(title.out.as_fd());
        let wake = match down {
            Some(d) if d >= SHOW_AFTER => {
                if ours {
                    title.show(&self::title(&host, d));
                }
                Some(UPDATE_EVERY)
            }
            Some(d) => Some(SHOW_AFTER - d),
            None if ours => {
                title.restore();
                None
            }
            // Restored once the job is in the foreground again.
            None => Some(UPDATE_EVERY),
        };
        let until = now + wake.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            changed = status.changed() => if changed.is_err() { break },
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(until)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_title_is_pushed_set_and_restored_once() {
        let mut out = Vec::new();
        {
            let mut t = Title {
                out: &mut out,
                shown: false,
            };
            t.restore();
            t.show(&title("db", Duration::from_millis(12_500)));
            t.show(&title("db\x1b[2J", Duration::from_secs(13)));
        }
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "\x1b[22;0t\x1b]2;rock: db — link down 12 s, reconnecting\x07\
             \x1b]2;rock: db[2J — link down 13 s, reconnecting\x07\
             \x1b]2;\x07\x1b[23;0t"
        );
    }
}
