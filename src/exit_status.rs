//! The status a shell reports for a process that ended: its exit code, or
//! 128 plus the signal that killed it — what every way of running rock
//! exits with when it stands for a command.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The shell's `$?` for `status`.
pub fn shell_code(status: ExitStatus) -> i32 {
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(255)
}

/// [`shell_code`] as a process exit status (255 when out of range).
pub fn shell_byte(status: ExitStatus) -> u8 {
    u8::try_from(shell_code(status)).unwrap_or(255)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_and_signals_read_as_a_shell_reads_them() {
        assert_eq!(shell_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(shell_code(ExitStatus::from_raw(libc::SIGTERM)), 143);
        assert_eq!(shell_byte(ExitStatus::from_raw(libc::SIGKILL)), 137);
    }
}
