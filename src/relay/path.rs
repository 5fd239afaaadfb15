//! What the kernel knows of a TCP link's path (`TCP_INFO`): its smallest
//! round trip and its recent delivery rate. Their product is the
//! bandwidth-delay product, the bytes the path itself holds; the relay
//! keeps its send window a few times that (`Session::set_send_window`).

use std::os::fd::AsRawFd;
use std::time::Duration;

/// A path's figures, as the kernel measured them on one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathEstimate {
    /// The smallest round trip seen on the connection.
    pub min_rtt: Duration,
    /// Bytes per second delivered, over the most recent round trip.
    pub delivery_rate: u64,
}

impl PathEstimate {
    /// The bandwidth-delay product, in bytes.
    pub fn bdp(&self) -> usize {
        let bytes = self.delivery_rate as u128 * self.min_rtt.as_micros() / 1_000_000;
        usize::try_from(bytes).unwrap_or(usize::MAX)
    }
}

/// The kernel's figures for TCP socket `socket`, when it has them (Linux
/// 4.9 or later, and a round trip measured).
pub fn estimate(socket: &impl AsRawFd) -> Option<PathEstimate> {
    // SAFETY: tcp_info is plain data; all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: `info` is valid for writes of `len` bytes; the kernel writes
    // at most that many and says how many in `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    // An older kernel's shorter struct lacks the fields read here.
    let needed =
        std::mem::offset_of!(libc::tcp_info, tcpi_delivery_rate) + std::mem::size_of::<u64>();
    if rc != 0 || (len as usize) < needed || info.tcpi_min_rtt == 0 || info.tcpi_min_rtt == u32::MAX
    {
        return None;
    }
    Some(PathEstimate {
        min_rtt: Duration::from_micros(u64::from(info.tcpi_min_rtt)),
        delivery_rate: info.tcpi_delivery_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_loopback_connection_has_a_short_path() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut a = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut b, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        for _ in 0..16 {
            a.write_all(&buf).unwrap();
            b.read_exact(&mut buf).unwrap();
        }
        let e = estimate(&a).expect("the kernel measures a loopback connection");
        assert!(e.min_rtt < Duration::from_millis(50), "{e:?}");
        assert!(e.delivery_rate > 0, "{e:?}");
        assert!(e.bdp() < 8 << 20, "{e:?}");
        let unix = std::os::unix::net::UnixStream::pair().unwrap().0;
        assert_eq!(estimate(&unix), None, "not TCP");
    }

    #[test]
    fn the_product_is_bytes_in_flight() {
        let e = PathEstimate {
            min_rtt: Duration::from_millis(100),
            delivery_rate: 12_500_000,
        };
        assert_eq!(e.bdp(), 1_250_000);
    }
}
