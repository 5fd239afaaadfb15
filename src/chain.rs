//! An error with its causes, on one line, as the binaries print it.
//!
//! Library errors say what failed at their own layer and keep the error
//! that caused it as their `source()`, without repeating its text (see
//! STYLE.md). The binaries print them with anyhow's `{:#}`, which walks
//! the sources; [`Chain`] is the same walk for the places in the library
//! that print or pass on an error themselves (rockd's answer on the boot
//! channel, a log line, a message about a further connection).

use std::error::Error;
use std::fmt;

/// Displays an error and each of its sources, joined by `": "`, as
/// anyhow's `{:#}` does.
#[derive(Clone, Copy)]
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut source = self.0.source();
        while let Some(cause) = source {
            write!(f, ": {cause}")?;
            source = cause.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `error` and its sources as one string (see [`Chain`]).
pub fn chain(error: &(dyn Error + 'static)) -> String {
    Chain(error).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("starting rockd")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn each_cause_is_shown_once_in_order() {
        let e = Outer(std::io::Error::other("the channel closed"));
        assert_eq!(chain(&e), "starting rockd: the channel closed");
        assert_eq!(
            Chain(&e).to_string(),
            format!("{:#}", anyhow::Error::new(e))
        );
    }
}
