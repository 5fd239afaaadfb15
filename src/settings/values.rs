//! The values settings take, as text: durations (`30s`, `72h`), sizes
//! (`4MiB`), port ranges (`60000-60100`) and IP addresses; read from the
//! configuration files (serde) and written back by `rock config check` in
//! the same form.

use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

/// Reads `500ms`, `30s`, `10m`, `72h`, `3d`, or a plain number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like \"30s\", \"10m\" or \"72h\""))?;
    let secs = |k: u64| Duration::from_secs(n.saturating_mul(k));
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        "d" => secs(86400),
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use ms, s, m, h or d"
            ));
        }
    })
}

/// Reads `4MiB`, `512KiB`, `1GiB`, or a plain number of bytes.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: usize = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like \"4MiB\""))?;
    let k = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        other => {
            return Err(format!(
                "unknown unit {other:?} in {text:?}; use KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(k)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Reads `60000-60100`: an inclusive range of ports, not starting at 0.
pub fn parse_port_range(text: &str) -> Result<(u16, u16), String> {
    let bad = || format!("{text:?} is not a port range like \"60000-60100\"");
    let (first, last) = text.trim().split_once('-').ok_or_else(bad)?;
    let first: u16 = first.trim().parse().map_err(|_| bad())?;
    let last: u16 = last.trim().parse().map_err(|_| bad())?;
    if first == 0 || first > last {
        return Err(format!(
            "{text:?} is not a port range: it must go from a port above 0 up to one at least as high"
        ));
    }
    Ok((first, last))
}

/// An IP address, as a string.
pub(super) fn ip_address<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<IpAddr>, D::Error> {
    let text = String::deserialize(d)?;
    text.trim().parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an IP address like \"0.0.0.0\", \"::\" or \"192.0.2.7\""
        ))
    })
}

/// A port range, as a string `first-last`.
pub(super) fn port_range<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<(u16, u16)>, D::Error> {
    let text = String::deserialize(d)?;
    parse_port_range(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// A duration as a string with a unit, or an integer number of seconds.
pub(super) fn duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Duration>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Some(Duration::from_secs(s))),
        Raw::Text(t) => parse_duration(&t)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// A size as a string with a unit, or an integer number of bytes.
pub(super) fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Bytes(usize),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Bytes(b) => Ok(Some(b)),
        Raw::Text(t) => parse_size(&t).map(Some).map_err(serde::de::Error::custom),
    }
}

/// Writes `d` the way [`parse_duration`] reads it, in the largest unit
/// that keeps it exact, up to hours: `72h`, `6s`, `500ms`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let secs = d.as_secs();
    for (unit, k) in [("h", 3600), ("m", 60)] {
        if secs.is_multiple_of(k) {
            return format!("{}{unit}", secs / k);
        }
    }
    format!("{secs}s")
}

/// Writes `n` bytes the way [`parse_size`] reads it: `4MiB`, `1500`.
pub fn format_size(n: usize) -> String {
    for (unit, shift) in [("GiB", 30), ("MiB", 20), ("KiB", 10)] {
        if n != 0 && n.is_multiple_of(1 << shift) {
            return format!("{}{unit}", n >> shift);
        }
    }
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_back_as_written() {
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("h").is_err());
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert!(parse_size("1TB").is_err());
        assert_eq!(parse_duration("3d"), parse_duration("72h"));
        for text in ["72h", "90m", "6s", "500ms", "1500ms", "0s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
        for text in ["4MiB", "1GiB", "512KiB", "1500", "0"] {
            let n = parse_size(text).unwrap();
            assert_eq!(format_size(n), text);
        }
        assert_eq!(parse_port_range("1-1"), Ok((1, 1)));
        assert!(parse_port_range("1-70000").is_err());
    }
}
