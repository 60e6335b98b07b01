//! Free loopback ports, and whether something listens on one yet.

use std::net::{TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

/// A TCP port free on 127.0.0.1 (the OS picks it; free when this returns).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 (TCP)")
}

/// A UDP port free on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 (UDP)")
}

/// A port free for both TCP and UDP on 127.0.0.1 (caddy serves TLS on TCP
/// and QUIC on UDP; the sidecar's RTP range).
pub fn free_tcp_udp_port() -> u16 {
    for _ in 0..50 {
        let port = free_tcp_port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no port free on TCP and UDP");
}

/// A port for a baresip phone: baresip listens on it (UDP and TCP) and
/// for SIP/TLS on the next one, so both must be free (a taken `port + 1`
/// made it exit with "Address already in use").
pub fn free_sip_port() -> u16 {
    for _ in 0..50 {
        let port = free_tcp_udp_port();
        let next = port.saturating_add(1);
        if TcpListener::bind(("127.0.0.1", next)).is_ok()
            && UdpSocket::bind(("127.0.0.1", next)).is_ok()
        {
            return port;
        }
    }
    panic!("no port pair free on TCP and UDP");
}

/// Whether some process has bound UDP 127.0.0.1:`port` (read from
/// /proc/net/udp, so the check itself never takes the port).
pub fn udp_port_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .map(|s| s.lines().any(|l| l.contains(&want)))
        .unwrap_or(false)
}

/// Waits until 127.0.0.1:`port` accepts TCP connections; false after `within`.
pub fn wait_tcp(port: u16, within: Duration) -> bool {
    let until = Instant::now() + within;
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_free_tcp_udp_port_can_be_bound_both_ways() {
        let port = free_tcp_udp_port();
        let _t = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let _u = UdpSocket::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn a_sip_port_has_its_neighbour_free_too() {
        let port = free_sip_port();
        let _t = TcpListener::bind(("127.0.0.1", port + 1)).unwrap();
        let _u = UdpSocket::bind(("127.0.0.1", port + 1)).unwrap();
    }

    #[test]
    fn udp_port_bound_sees_a_bound_socket() {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = s.local_addr().unwrap().port();
        assert!(udp_port_bound(port));
        drop(s);
        assert!(!udp_port_bound(port));
    }

    #[test]
    fn wait_tcp_sees_a_listener_and_gives_up_without_one() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert!(wait_tcp(port, Duration::from_secs(1)));
        drop(l);
        assert!(!wait_tcp(port, Duration::from_millis(100)));
    }
}
