//! `rockd`: the remote end of `rock -d`.

fn main() -> anyhow::Result<()> {
    anyhow::bail!("rockd {}: not implemented yet", env!("CARGO_PKG_VERSION"))
}
