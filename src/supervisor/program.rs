//! What kind of program `rock COMMAND` is about to run, as far as the
//! preload library is concerned: found on PATH as the shell would, then
//! read (its ELF headers, or the `#!` line of a script) to tell whether
//! `LD_PRELOAD` can reach its sockets at all.
//!
//! The dynamic loader honours `LD_PRELOAD` only for dynamically linked
//! programs that are not setuid or setgid; and a Go program makes its
//! network system calls directly, around libc, even when it is dynamically
//! linked. For those rock says plainly that the connections stay plain TCP
//! instead of silently doing nothing.
//!
//! The reader never trusts the file: every offset and count is checked
//! against the bytes actually read, and anything it cannot understand is
//! [`Kind::Unknown`], which rock runs as it would a dynamic program.

use std::ffi::{OsStr, OsString};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The largest table or section read: ELF headers, program headers, the
/// section headers and their names are read where they lie, each bounded
/// by this.
const MAX_READ: u64 = 1 << 20;

/// What rock found out about a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Dynamically linked: the library will be loaded.
    Dynamic,
    /// Statically linked: no dynamic loader, so no preloading.
    Static,
    /// Built by Go: it makes its socket calls without libc.
    Go,
    /// Set-user-ID or set-group-ID: the loader ignores `LD_PRELOAD`.
    Setuid,
    /// Not an ELF file rock can read (a script with `#!/usr/bin/env`, a
    /// format of another machine, …): run it and let the loader decide.
    Unknown,
}

impl Kind {
    /// Why the library cannot reach this program's connections, if it
    /// cannot; `None` when it can (or may).
    pub fn limit(&self) -> Option<&'static str> {
        match self {
            Kind::Dynamic | Kind::Unknown => None,
            Kind::Static => Some("it is statically linked, so nothing can be preloaded into it"),
            Kind::Go => Some("it is a Go program, which makes its network calls without libc"),
            Kind::Setuid => {
                Some("it is set-user-ID or set-group-ID, so the loader ignores LD_PRELOAD")
            }
        }
    }
}

/// Finds `program` as `execvp` would: a name with a slash is a path; any
/// other is looked up in `path` (the `PATH` value).
pub fn find(program: &OsStr, path: Option<&OsStr>) -> Option<PathBuf> {
    if program.as_bytes().contains(&b'/') {
        return Some(PathBuf::from(program));
    }
    let path = path.unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"));
    path.as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
            Path::new(OsStr::from_bytes(dir)).join(program)
        })
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Inspects the program at `path`, following one `#!` line to its
/// interpreter (a script runs in its interpreter's process).
pub fn inspect(path: &Path) -> Kind {
    if set_id(path) {
        return Kind::Setuid;
    }
    let Ok(file) = std::fs::File::open(path) else {
        return Kind::Unknown;
    };
    let mut head = Vec::new();
    if (&file).take(256).read_to_end(&mut head).is_err() {
        return Kind::Unknown;
    }
    if let Some(interpreter) = shebang(&head) {
        // `#!/usr/bin/env python3` names its program only at run time.
        if interpreter.file_name() == Some(OsStr::new("env")) {
            return Kind::Unknown;
        }
        return inspect_elf_only(&interpreter);
    }
    classify_file(&file)
}

/// [`inspect`] without following another `#!` (the kernel follows one).
fn inspect_elf_only(path: &Path) -> Kind {
    if set_id(path) {
        return Kind::Setuid;
    }
    match std::fs::File::open(path) {
        Ok(file) => classify_file(&file),
        Err(_) => Kind::Unknown,
    }
}

/// Setuid or setgid: the loader ignores `LD_PRELOAD` for it.
fn set_id(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o6000 != 0)
}

/// The interpreter a `#!` line names, if `head` starts with one.
fn shebang(head: &[u8]) -> Option<PathBuf> {
    let line = head.strip_prefix(b"#!")?;
    let end = line.iter().position(|&b| b == b'\n').unwrap_or(line.len());
    let word = line[..end]
        .split(|b| b.is_ascii_whitespace())
        .find(|w| !w.is_empty())?;
    Some(PathBuf::from(OsString::from(OsStr::from_bytes(word))))
}

/// Reads an ELF file through `read(offset, len)` (which gives exactly
/// `len` bytes or nothing): [`Kind::Go`] if it has a `.go.buildinfo`
/// section, else [`Kind::Dynamic`] if it has a program interpreter
/// (`PT_INTERP`), else [`Kind::Static`]; [`Kind::Unknown`] if it is not ELF.
pub fn classify(read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> Kind {
    let Some(ident) = read(0, 64).or_else(|| read(0, 52)) else {
        return Kind::Unknown;
    };
    let Some(header) = Header::parse(&ident) else {
        return Kind::Unknown;
    };
    if header.has_section(read, b".go.buildinfo") {
        Kind::Go
    } else if header.has_interpreter(read) {
        Kind::Dynamic
    } else {
        Kind::Static
    }
}

/// [`classify`] for a file.
fn classify_file(file: &std::fs::File) -> Kind {
    use std::os::unix::fs::FileExt;
    classify(&|offset, len| {
        if len as u64 > MAX_READ {
            return None;
        }
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, offset).ok().map(|()| buf)
    })
}

/// The ELF header fields rock needs.
struct Header {
    wide: bool,
    little: bool,
    phoff: u64,
    phentsize: usize,
    phnum: usize,
    shoff: u64,
    shentsize: usize,
    shnum: usize,
    shstrndx: usize,
}

const PT_INTERP: u64 = 3;

/// An unsigned field of `len` bytes at `at` of `bytes`, little or big
/// endian.
fn field(bytes: &[u8], at: usize, len: usize, little: bool) -> Option<u64> {
    let f = bytes.get(at..at.checked_add(len)?)?;
    let mut value: u64 = 0;
    for i in 0..len {
        let b = if little { f[len - 1 - i] } else { f[i] };
        value = (value << 8) | u64::from(b);
    }
    Some(value)
}

impl Header {
    fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.get(..4)? != b"\x7fELF" {
            return None;
        }
        let wide = match bytes.get(4)? {
            1 => false,
            2 => true,
            _ => return None,
        };
        let little = match bytes.get(5)? {
            1 => true,
            2 => false,
            _ => return None,
        };
        let f = |at, len| field(bytes, at, len, little);
        let small = |at| f(at, 2).and_then(|v| usize::try_from(v).ok());
        let (phoff, shoff, rest) = if wide {
            (f(32, 8)?, f(40, 8)?, 52)
        } else {
            (f(28, 4)?, f(32, 4)?, 40)
        };
        Some(Header {
            wide,
            little,
            phoff,
            phentsize: small(rest + 2)?,
            phnum: small(rest + 4)?,
            shoff,
            shentsize: small(rest + 6)?,
            shnum: small(rest + 8)?,
            shstrndx: small(rest + 10)?,
        })
    }

    /// A table of `count` entries of `size` bytes at `offset`, read whole.
    fn table(
        read: &dyn Fn(u64, usize) -> Option<Vec<u8>>,
        offset: u64,
        size: usize,
        count: usize,
    ) -> Option<Vec<u8>> {
        read(offset, size.checked_mul(count)?)
    }

    fn has_interpreter(&self, read: &dyn Fn(u64, usize) -> Option<Vec<u8>>) -> bool {
        let Some(table) = Self::table(read, self.phoff, self.phentsize, self.phnum) else {
            return false;
        };
        (0..self.phnum)
            .any(|i| field(&table, i * self.phentsize, 4, self.little) == Some(PT_INTERP))
    }

    fn has_section(&self, read: &dyn Fn(u64, usize) -> Option<Vec<u8>>, wanted: &[u8]) -> bool {
        let Some(table) = Self::table(read, self.shoff, self.shentsize, self.shnum) else {
            return false;
        };
        // Offset and size of section `i`, from the table.
        let section = |i: usize| -> Option<(u64, usize)> {
            let at = i.checked_mul(self.shentsize)?;
            let (off, size) = if self.wide {
                (
                    field(&table, at + 24, 8, self.little)?,
                    field(&table, at + 32, 8, self.little)?,
                )
            } else {
                (
                    field(&table, at + 16, 4, self.little)?,
                    field(&table, at + 20, 4, self.little)?,
                )
            };
            Some((off, usize::try_from(size).ok()?))
        };
        let Some(names) = section(self.shstrndx).and_then(|(off, size)| read(off, size)) else {
            return false;
        };
        (0..self.shnum).any(|i| {
            i.checked_mul(self.shentsize)
                .and_then(|at| field(&table, at, 4, self.little))
                .and_then(|name| usize::try_from(name).ok())
                .and_then(|name| names.get(name..))
                .and_then(|rest| rest.split(|&b| b == 0).next())
                .is_some_and(|n| n == wanted)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shell_is_dynamic_and_found_on_path() {
        let sh = find(
            OsStr::new("sh"),
            Some(OsStr::new("/nonexistent:/bin:/usr/bin")),
        )
        .expect("sh on PATH");
        assert_eq!(inspect(&sh), Kind::Dynamic);
        assert_eq!(find(OsStr::new("no-such-program-here"), None), None);
    }

    #[test]
    fn a_script_is_judged_by_its_interpreter() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let script = dir.path().join("s");
        std::fs::write(&script, "#!/bin/sh -e\necho hi\n").expect("write");
        assert_eq!(inspect(&script), Kind::Dynamic);
        std::fs::write(&script, "#!/usr/bin/env python3\n").expect("write");
        assert_eq!(inspect(&script), Kind::Unknown);
    }

    #[test]
    fn a_setuid_program_is_named() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let copy = dir.path().join("su-like");
        std::fs::copy("/bin/sh", &copy).expect("copy sh");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
        assert_eq!(inspect(&copy), Kind::Setuid);
        assert!(
            Kind::Setuid
                .limit()
                .is_some_and(|l| l.contains("LD_PRELOAD"))
        );
    }

    fn of(bytes: &[u8]) -> Kind {
        classify(&|offset, len| {
            let start = usize::try_from(offset).ok()?;
            bytes
                .get(start..start.checked_add(len)?)
                .map(<[u8]>::to_vec)
        })
    }

    #[test]
    fn hostile_headers_are_unknown_or_static_never_a_panic() {
        assert_eq!(of(b""), Kind::Unknown);
        assert_eq!(of(b"\x7fELF"), Kind::Unknown);
        let mut header = b"\x7fELF\x02\x01\x01".to_vec();
        header.resize(64, 0xff);
        // Offsets and counts all 0xff…: every table lies outside the bytes.
        assert_eq!(of(&header), Kind::Static);
        for len in 0..header.len() {
            let _ = of(&header[..len]);
        }
        let sh = std::fs::read("/bin/sh").expect("read /bin/sh");
        assert_eq!(of(&sh), Kind::Dynamic);
        for cut in [16, 64, 100, 1000, sh.len() / 2, sh.len() - 1] {
            let _ = of(&sh[..cut]);
        }
        // Every byte of the headers flipped in turn.
        let mut bent = sh.clone();
        for at in 0..256 {
            bent[at] ^= 0xff;
            let _ = of(&bent);
            bent[at] ^= 0xff;
        }
    }

    /// Builds a C program with gcc into `dir` with `flags`; returns its path.
    fn build(dir: &Path, name: &str, source: &str, flags: &[&str]) -> PathBuf {
        let src = dir.join(format!("{name}.c"));
        std::fs::write(&src, source).expect("write the source");
        let out = dir.join(name);
        let status = std::process::Command::new("gcc")
            .args(flags)
            .arg("-o")
            .arg(&out)
            .arg(&src)
            .status()
            .expect("run gcc");
        assert!(status.success(), "gcc {flags:?} failed");
        out
    }

    #[test]
    fn static_dynamic_and_go_programs_are_told_apart() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let main = "int main(void) { return 0; }\n";
        let dynamic = build(dir.path(), "dynamic", main, &[]);
        assert_eq!(inspect(&dynamic), Kind::Dynamic);
        let fixed = build(dir.path(), "fixed", main, &["-static"]);
        assert_eq!(inspect(&fixed), Kind::Static);
        assert!(
            Kind::Static
                .limit()
                .is_some_and(|l| l.contains("statically"))
        );
        // What the Go toolchain leaves in every binary it links.
        let go = "__attribute__((used, section(\".go.buildinfo\"))) \
                  const char info[32] = \"\\xff Go buildinf:\";\n"
            .to_owned()
            + main;
        let go = build(dir.path(), "go", &go, &[]);
        assert_eq!(inspect(&go), Kind::Go);
    }
}
