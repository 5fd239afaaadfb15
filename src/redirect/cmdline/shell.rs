//! Command lines held in one string — rsync's `-e` and `RSYNC_RSH`, git's
//! `GIT_SSH_COMMAND` and `core.sshCommand` — split into words as their
//! readers split them, and rewritten by inserting words right after the
//! first one (the program), so that everything the user wrote after it
//! keeps its exact quoting.
//!
//! rsync splits its remote-shell command itself (`main.c` `do_cmd`): only
//! spaces separate words; `'…'` and `"…"` quote, a doubled quote character
//! inside them is one literal quote, and there is no backslash escape.
//! git hands its command to `sh -c`, so it is read here as the shell would
//! read a simple command: blanks separate words, `'…'`, `"…"` and `\`
//! quote, `$NAME`, `${NAME}` and a leading `~` expand. Anything else the
//! shell would interpret (`$(…)`, backquotes, `;`, `|`, `&`, redirections,
//! a leading `NAME=value`) is refused: rock must know which ssh runs with
//! which options, and only a shell could say.

/// Which reader the string is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Syntax {
    /// rsync's own splitting.
    Rsync,
    /// A simple `sh` command.
    Shell,
}

/// A command line split into words.
#[derive(Debug, PartialEq)]
pub(super) struct Split {
    /// The words, quotes removed and variables expanded.
    pub(super) words: Vec<Vec<u8>>,
    /// Byte offset just after the first word in the original text.
    pub(super) first_end: usize,
}

/// What the shell reader needs from the environment.
pub(super) trait Vars {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<Vec<u8>>;
}

/// What in a command line its reader would not read, or rock cannot
/// follow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellError {
    /// No words at all.
    #[error("it is empty")]
    Empty,
    /// A quote (or `${`) without its end.
    #[error("a {0} is not closed")]
    Unclosed(&'static str),
    /// `NAME=value` before the program.
    #[error("it starts with a variable assignment")]
    Assignment,
    /// `~` without `$HOME`.
    #[error("`~` needs HOME to be set")]
    NoHome,
    /// A variable name that is not text.
    #[error("a variable name is not text")]
    NameNotText,
    /// Something only a shell could follow.
    #[error("it uses the shell's {0}, which rock cannot follow")]
    Refused(String),
}

/// Splits `text` as `syntax`'s reader would. The error says what cannot be
/// read.
pub(super) fn split(syntax: Syntax, text: &[u8], vars: &dyn Vars) -> Result<Split, ShellError> {
    let split = match syntax {
        Syntax::Rsync => split_rsync(text)?,
        Syntax::Shell => split_shell(text, vars)?,
    };
    if split.words.is_empty() {
        return Err(ShellError::Empty);
    }
    Ok(split)
}

/// rsync `do_cmd`: spaces separate; quotes as described in the module doc.
fn split_rsync(text: &[u8]) -> Result<Split, ShellError> {
    let mut words = Vec::new();
    let mut first_end = 0;
    let mut i = 0;
    while i < text.len() {
        if text[i] == b' ' {
            i += 1;
            continue;
        }
        let mut word = Vec::new();
        let mut quote: Option<u8> = None;
        while let Some(&c) = text.get(i) {
            match quote {
                None if c == b' ' => break,
                None if c == b'\'' || c == b'"' => quote = Some(c),
                Some(q) if c == q => {
                    if text.get(i + 1) == Some(&q) {
                        word.push(q);
                        i += 1;
                    } else {
                        quote = None;
                    }
                }
                _ => word.push(c),
            }
            i += 1;
        }
        if let Some(q) = quote {
            return Err(ShellError::Unclosed(if q == b'"' {
                "\" quote"
            } else {
                "' quote"
            }));
        }
        if words.is_empty() {
            first_end = i;
        }
        words.push(word);
    }
    Ok(Split { words, first_end })
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n')
}

/// A simple `sh` command, as described in the module doc.
fn split_shell(text: &[u8], vars: &dyn Vars) -> Result<Split, ShellError> {
    let mut words = Vec::new();
    let mut first_end = 0;
    let mut i = 0;
    loop {
        while text.get(i).copied().is_some_and(is_blank) {
            i += 1;
        }
        if i >= text.len() {
            break;
        }
        let start = i;
        let mut word = Vec::new();
        while let Some(&c) = text.get(i) {
            if is_blank(c) {
                break;
            }
            match c {
                b'\'' => {
                    let end = text[i + 1..]
                        .iter()
                        .position(|&b| b == b'\'')
                        .ok_or(ShellError::Unclosed("' quote"))?;
                    word.extend_from_slice(&text[i + 1..i + 1 + end]);
                    i += end + 2;
                }
                b'"' => {
                    i += 1;
                    loop {
                        match text.get(i) {
                            None => return Err(ShellError::Unclosed("\" quote")),
                            Some(b'"') => break,
                            Some(b'\\')
                                if matches!(text.get(i + 1), Some(b'$' | b'`' | b'"' | b'\\')) =>
                            {
                                word.push(text[i + 1]);
                                i += 2;
                            }
                            Some(b'\\') if text.get(i + 1) == Some(&b'\n') => i += 2,
                            Some(b'$') => i = expand(text, i, vars, &mut word)?,
                            Some(b'`') => return Err(refused("`…`")),
                            Some(&b) => {
                                word.push(b);
                                i += 1;
                            }
                        }
                    }
                    i += 1;
                }
                b'\\' => {
                    match text.get(i + 1) {
                        None => {}
                        Some(b'\n') => {}
                        Some(&b) => word.push(b),
                    }
                    i += 2;
                }
                b'$' => i = expand(text, i, vars, &mut word)?,
                b'~' if i == start => {
                    let end = text[i..]
                        .iter()
                        .position(|&b| is_blank(b) || b == b'/')
                        .map_or(text.len(), |p| i + p);
                    if end == i + 1 {
                        let home = vars.var("HOME").ok_or(ShellError::NoHome)?;
                        word.extend_from_slice(&home);
                    } else {
                        word.extend_from_slice(&text[i..end]);
                    }
                    i = end;
                }
                b'`' => return Err(refused("`…`")),
                b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' => {
                    return Err(refused(&char::from(c).to_string()));
                }
                b'=' if words.is_empty() && is_name(&text[start..i]) => {
                    return Err(ShellError::Assignment);
                }
                _ => {
                    word.push(c);
                    i += 1;
                }
            }
        }
        if words.is_empty() {
            first_end = i;
        }
        words.push(word);
    }
    Ok(Split { words, first_end })
}

fn refused(what: &str) -> ShellError {
    ShellError::Refused(what.to_owned())
}

fn is_name(s: &[u8]) -> bool {
    s.first()
        .is_some_and(|&b| b.is_ascii_alphabetic() || b == b'_')
        && s.iter().all(|&b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Expands `$NAME` or `${NAME}` at `text[at]`; returns where reading goes on.
fn expand(
    text: &[u8],
    at: usize,
    vars: &dyn Vars,
    word: &mut Vec<u8>,
) -> Result<usize, ShellError> {
    let (name, next) = if text.get(at + 1) == Some(&b'{') {
        let len = text[at + 2..]
            .iter()
            .position(|&b| b == b'}')
            .ok_or(ShellError::Unclosed("${"))?;
        (&text[at + 2..at + 2 + len], at + 3 + len)
    } else {
        let len = text[at + 1..]
            .iter()
            .position(|&b| !(b.is_ascii_alphanumeric() || b == b'_'))
            .unwrap_or(text.len() - at - 1);
        (&text[at + 1..at + 1 + len], at + 1 + len)
    };
    if !is_name(name) {
        return Err(refused("`$` expansions other than $NAME and ${NAME}"));
    }
    let name = std::str::from_utf8(name).map_err(|_| ShellError::NameNotText)?;
    word.extend(vars.var(name).unwrap_or_default());
    Ok(next)
}

/// `word` quoted so that `syntax`'s reader reads it back unchanged.
pub(super) fn quote(syntax: Syntax, word: &[u8]) -> Vec<u8> {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_=./,:@%+".contains(b);
    if !word.is_empty() && word.iter().all(plain) {
        return word.to_vec();
    }
    let mut out = Vec::with_capacity(word.len() + 8);
    match syntax {
        Syntax::Rsync => {
            out.push(b'"');
            for &b in word {
                if b == b'"' {
                    out.push(b'"');
                }
                out.push(b);
            }
            out.push(b'"');
        }
        Syntax::Shell => {
            out.push(b'\'');
            for &b in word {
                if b == b'\'' {
                    out.extend_from_slice(b"'\\''");
                } else {
                    out.push(b);
                }
            }
            out.push(b'\'');
        }
    }
    out
}

/// `text` with `words` (quoted for `syntax`) inserted after its first word,
/// which ends at `first_end`.
pub(super) fn insert_after_first(
    syntax: Syntax,
    text: &[u8],
    first_end: usize,
    words: &[Vec<u8>],
) -> Vec<u8> {
    let mut out = text[..first_end].to_vec();
    for w in words {
        out.push(b' ');
        out.extend(quote(syntax, w));
    }
    out.extend_from_slice(&text[first_end..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Env(HashMap<&'static str, &'static str>);
    impl Vars for Env {
        fn var(&self, name: &str) -> Option<Vec<u8>> {
            self.0.get(name).map(|v| v.as_bytes().to_vec())
        }
    }

    fn env() -> Env {
        Env(HashMap::from([("HOME", "/home/me"), ("K", "key file")]))
    }

    fn words(syntax: Syntax, text: &str) -> Result<Vec<String>, ShellError> {
        split(syntax, text.as_bytes(), &env()).map(|s| {
            s.words
                .into_iter()
                .map(|w| String::from_utf8(w).unwrap())
                .collect()
        })
    }

    #[test]
    fn rsync_splits_on_spaces_with_doubled_quotes() {
        // As checked against rsync 3.2 with a program that prints its argv.
        assert_eq!(
            words(Syntax::Rsync, r#"ssh 'x''y' "p""q" "a b"  c'd'"#).unwrap(),
            ["ssh", "x'y", "p\"q", "a b", "cd"]
        );
        assert_eq!(
            words(Syntax::Rsync, "ssh\t-v").unwrap(),
            ["ssh\t-v"],
            "only spaces separate"
        );
        assert!(words(Syntax::Rsync, "ssh 'x").is_err());
        assert!(words(Syntax::Rsync, "  ").is_err());
    }

    #[test]
    fn shell_reads_a_simple_command() {
        assert_eq!(
            words(
                Syntax::Shell,
                r#"ssh -i "$HOME/.ssh/k" -F ~/cfg -o 'User=a b' \-v "${K}" x\ y"#
            )
            .unwrap(),
            [
                "ssh",
                "-i",
                "/home/me/.ssh/k",
                "-F",
                "/home/me/cfg",
                "-o",
                "User=a b",
                "-v",
                "key file",
                "x y"
            ]
        );
        for bad in [
            "ssh $(cat f)",
            "ssh `cat f`",
            "ssh; rm x",
            "ssh >log",
            "X=1 ssh",
            "ssh '",
            "ssh $1",
        ] {
            assert!(words(Syntax::Shell, bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn inserted_words_read_back_and_keep_the_rest() {
        let ours = [
            b"-o".to_vec(),
            b"ProxyCommand='/run/rock/a b/rock-proxy'".to_vec(),
            b"-o".to_vec(),
            b"ProxyUseFdpass=yes".to_vec(),
        ];
        for (syntax, text) in [
            (Syntax::Rsync, r#"  "/usr/bin/ssh" -F 'my cfg' -v"#),
            (Syntax::Shell, r#"ssh -i "$HOME/k""#),
            (Syntax::Shell, "ssh"),
        ] {
            let before = split(syntax, text.as_bytes(), &env()).unwrap();
            let out = insert_after_first(syntax, text.as_bytes(), before.first_end, &ours);
            let after = split(syntax, &out, &env()).unwrap();
            let mut expected = before.words.clone();
            expected.splice(1..1, ours.iter().cloned());
            assert_eq!(after.words, expected, "{}", String::from_utf8_lossy(&out));
        }
    }
}
