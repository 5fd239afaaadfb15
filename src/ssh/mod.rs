//! The SSH bootstrap of `rock -d`: resolving the destination as OpenSSH
//! would, checking the host key, authenticating once and starting rockd.
//! (Built by the `rock -d` work; empty until then.)
