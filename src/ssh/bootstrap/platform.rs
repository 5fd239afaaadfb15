//! Which machines a rockd binary runs on: this machine's OS and
//! architecture, a remote's as `uname -sm` reports them (in the same
//! terms, so the two compare), the remote's C library as the install probe
//! reports it, and the glibc floor of the rockd built with this rock.

use std::fmt;

/// The oldest glibc that the rockd built alongside this rock runs on (the
/// newest `GLIBC_*` symbol version it needs). `tests/install.rs` checks the
/// built binary against it; README.md and man/rockd.8 state it.
pub const GLIBC_FLOOR: &str = "2.34";

/// An operating system and processor architecture, in Rust's terms
/// (`std::env::consts::OS`, `ARCH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// `linux`, `macos`, `freebsd`, ...
    pub os: String,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
}

impl Platform {
    /// This machine (the target rock was built for).
    pub fn local() -> Platform {
        let arch = match std::env::consts::ARCH {
            // uname tells the two apart; Rust's ARCH does not.
            "powerpc64" if cfg!(target_endian = "little") => "powerpc64le",
            other => other,
        };
        Platform {
            os: std::env::consts::OS.to_owned(),
            arch: arch.to_owned(),
        }
    }

    /// From the output of `uname -sm` (`Linux x86_64`, `Darwin arm64`).
    pub fn from_uname(text: &str) -> Option<Platform> {
        let mut words = text.split_whitespace();
        let (system, machine) = (words.next()?, words.next()?);
        let os = match system {
            "Linux" => "linux",
            "Darwin" => "macos",
            "FreeBSD" => "freebsd",
            "OpenBSD" => "openbsd",
            "NetBSD" => "netbsd",
            "DragonFly" => "dragonfly",
            "SunOS" => "solaris",
            other => return Some(Platform::raw(other, machine)),
        };
        let arch = match machine {
            "x86_64" | "amd64" => "x86_64",
            "aarch64" | "arm64" => "aarch64",
            "i386" | "i486" | "i586" | "i686" | "i86pc" => "x86",
            "ppc64le" => "powerpc64le",
            "ppc64" => "powerpc64",
            m if m.starts_with("armv") => "arm",
            other => other,
        };
        Some(Platform {
            os: os.to_owned(),
            arch: arch.to_owned(),
        })
    }

    /// A system this module has no name for, kept as uname said it.
    fn raw(system: &str, machine: &str) -> Platform {
        Platform {
            os: system.to_lowercase(),
            arch: machine.to_owned(),
        }
    }
}

impl fmt::Display for Platform {
    /// `x86_64 Linux`, as a person would say it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let os = match self.os.as_str() {
            "linux" => "Linux",
            "macos" => "macOS",
            "freebsd" => "FreeBSD",
            "openbsd" => "OpenBSD",
            "netbsd" => "NetBSD",
            "dragonfly" => "DragonFly",
            "solaris" => "Solaris",
            other => other,
        };
        write!(f, "{} {os}", self.arch)
    }
}

/// The remote's C library, as far as the probe could tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Libc {
    /// glibc, with its version (`getconf GNU_LIBC_VERSION`).
    Glibc(String),
    /// musl (its dynamic loader is present and glibc's `getconf` is not).
    Musl,
    /// Neither could be seen (another system, or a minimal one).
    Unknown,
}

impl Libc {
    /// From the probe's `libc` line: `glibc 2.36`, `musl`, or nothing.
    pub fn parse(text: Option<&str>) -> Libc {
        let text = text.unwrap_or_default().trim();
        if text == "musl" {
            return Libc::Musl;
        }
        match text.strip_prefix("glibc ") {
            Some(version) if parse_version(version).is_some() => {
                Libc::Glibc(version.trim().to_owned())
            }
            _ => Libc::Unknown,
        }
    }

    /// Why a rockd linked against glibc (needing [`GLIBC_FLOOR`]) cannot
    /// run with this C library, if it cannot.
    pub fn refuses_glibc_rockd(&self) -> Option<String> {
        match self {
            Libc::Musl => Some(format!(
                "it uses musl libc, and this rockd is linked against glibc (>= {GLIBC_FLOOR})"
            )),
            Libc::Glibc(v) if older(v, GLIBC_FLOOR) => Some(format!(
                "it has glibc {v}, and this rockd needs glibc >= {GLIBC_FLOOR}"
            )),
            _ => None,
        }
    }
}

/// `2.36` → (2, 36); extra parts (`2.36.1`) are ignored.
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether version `a` is older than `b` (both `major.minor`); versions
/// that do not parse compare as not older.
fn older(a: &str, b: &str) -> bool {
    match (parse_version(a), parse_version(b)) {
        (Some(a), Some(b)) => a < b,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uname_output_compares_with_rust_names() {
        let p = |s| Platform::from_uname(s).expect(s);
        assert_eq!(p("Linux x86_64\n").to_string(), "x86_64 Linux");
        assert_eq!(
            p("Darwin arm64"),
            Platform {
                os: "macos".into(),
                arch: "aarch64".into()
            }
        );
        assert_eq!(p("FreeBSD amd64").arch, "x86_64");
        assert_eq!(p("Linux armv7l").arch, "arm");
        assert_eq!(p("Linux i686").arch, "x86");
        assert_eq!(p("Haiku BePC").to_string(), "BePC haiku");
        assert!(Platform::from_uname("Linux").is_none());
        // This machine, described by its own uname, is itself.
        let out = std::process::Command::new("uname")
            .arg("-sm")
            .output()
            .expect("uname runs");
        let here = Platform::from_uname(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(here, Some(Platform::local()));
    }

    #[test]
    fn libc_floor_is_checked() {
        assert_eq!(Libc::parse(Some("glibc 2.36")), Libc::Glibc("2.36".into()));
        assert_eq!(Libc::parse(Some("musl")), Libc::Musl);
        assert_eq!(Libc::parse(None), Libc::Unknown);
        assert_eq!(Libc::parse(Some("glibc x")), Libc::Unknown);
        assert!(Libc::Glibc("2.17".into()).refuses_glibc_rockd().is_some());
        assert!(Libc::Glibc("2.40".into()).refuses_glibc_rockd().is_none());
        assert!(
            Libc::Glibc(GLIBC_FLOOR.into())
                .refuses_glibc_rockd()
                .is_none()
        );
        assert!(Libc::Musl.refuses_glibc_rockd().is_some());
        assert!(Libc::Unknown.refuses_glibc_rockd().is_none());
        assert!(older("2.9", "2.34") && !older("3.0", "2.34"));
    }
}
