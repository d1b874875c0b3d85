//! Which process a TCP connection belongs to, asked of this machine's kernel (Linux).
//!
//! The kernel finds the socket with exactly the given two ends (a `sock_diag` netlink lookup,
//! one hash probe; `/proc/net/tcp` would walk the whole connection table, milliseconds on a
//! large machine) and gives its inode; the process owns the connection when one of its open
//! files (`/proc/<pid>/fd`) is that socket. Needs no privilege beyond being the same OS user
//! as the process, which every backend of a server is.

use std::ffi::{c_int, c_void};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

extern "C" {
    fn socket(domain: c_int, kind: c_int, protocol: c_int) -> c_int;
    fn send(fd: c_int, buffer: *const c_void, length: usize, flags: c_int) -> isize;
    fn recv(fd: c_int, buffer: *mut c_void, length: usize, flags: c_int) -> isize;
    fn close(fd: c_int) -> c_int;
}

const AF_NETLINK: c_int = 16;
const SOCK_DGRAM: c_int = 2;
const SOCK_CLOEXEC: c_int = 0o2000000;
const NETLINK_SOCK_DIAG: c_int = 4;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const TCP_ESTABLISHED: u8 = 1;
/// `struct nlmsghdr`, then `struct inet_diag_req_v2` (linux/inet_diag.h).
const HEADER: usize = 16;
const REQUEST: usize = HEADER + 8 + 48;
/// In the answer (`struct inet_diag_msg` after the header): the state and the inode.
const STATE_AT: usize = HEADER + 1;
const INODE_AT: usize = HEADER + 4 + 48 + 16;

/// Whether process `pid` has an established TCP connection from `local` to `remote`.
pub fn owns_connection(pid: i32, local: SocketAddr, remote: SocketAddr) -> bool {
    let Some(inode) = socket_inode(local, remote) else {
        return false;
    };
    let Ok(files) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let wanted = format!("socket:[{inode}]");
    files
        .filter_map(|file| std::fs::read_link(file.ok()?.path()).ok())
        .any(|target| target.as_os_str() == wanted.as_str())
}

/// The inode of the established TCP socket from `local` to `remote`, as an IPv4 or an IPv6
/// socket (an IPv4 connection of an IPv6 socket has mapped addresses).
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u32> {
    let mapped = |address: IpAddr| match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    };
    let v4 = match (local.ip(), remote.ip()) {
        (IpAddr::V4(l), IpAddr::V4(r)) => lookup(
            AF_INET,
            (local.port(), words(&l.octets())),
            (remote.port(), words(&r.octets())),
        ),
        _ => None,
    };
    v4.or_else(|| {
        let (l, r): (Ipv6Addr, Ipv6Addr) = (mapped(local.ip()), mapped(remote.ip()));
        lookup(
            AF_INET6,
            (local.port(), words(&l.octets())),
            (remote.port(), words(&r.octets())),
        )
    })
}

/// An address as the four 32-bit words of `inet_diag_sockid` (network byte order in memory).
fn words(octets: &[u8]) -> [u8; 16] {
    let mut words = [0u8; 16];
    words[..octets.len()].copy_from_slice(octets);
    words
}

fn lookup(family: u8, local: (u16, [u8; 16]), remote: (u16, [u8; 16])) -> Option<u32> {
    let mut request = [0u8; REQUEST];
    request[0..4].copy_from_slice(&(REQUEST as u32).to_ne_bytes());
    request[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    request[6..8].copy_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    let body = &mut request[HEADER..];
    body[0] = family;
    body[1] = IPPROTO_TCP;
    body[4..8].copy_from_slice(&u32::MAX.to_ne_bytes()); // every state
    let id = &mut body[8..];
    id[0..2].copy_from_slice(&local.0.to_be_bytes());
    id[2..4].copy_from_slice(&remote.0.to_be_bytes());
    id[4..20].copy_from_slice(&local.1);
    id[20..36].copy_from_slice(&remote.1);
    id[40..48].copy_from_slice(&[0xff; 8]); // INET_DIAG_NOCOOKIE
    let mut answer = [0u8; 512];
    let received = unsafe {
        let fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
        if fd < 0 {
            return None;
        }
        let sent = send(fd, request.as_ptr().cast(), request.len(), 0);
        let mut received = -1;
        if sent == request.len() as isize {
            // A signal may interrupt the wait (EINTR): ask again, a few times.
            for _ in 0..3 {
                received = recv(fd, answer.as_mut_ptr().cast(), answer.len(), 0);
                if received >= 0 {
                    break;
                }
            }
        }
        close(fd);
        received
    };
    // An error message (no such socket) has another type; the message must be whole.
    let length = u32::from_ne_bytes([answer[0], answer[1], answer[2], answer[3]]) as isize;
    let kind = u16::from_ne_bytes([answer[4], answer[5]]);
    if received < (INODE_AT + 4) as isize
        || length > received
        || kind != SOCK_DIAG_BY_FAMILY
        || answer[STATE_AT] != TCP_ESTABLISHED
    {
        return None;
    }
    Some(u32::from_ne_bytes(
        answer[INODE_AT..INODE_AT + 4].try_into().ok()?,
    ))
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn own_sockets_are_found_and_others_are_not() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server, _) = listener.accept().unwrap();
        let me = std::process::id() as i32;
        let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
        assert!(socket_inode(local, remote).is_some());
        assert!(owns_connection(me, local, remote));
        assert!(owns_connection(me, remote, local)); // the accepted end is ours too
        assert!(!owns_connection(me, local, "127.0.0.1:1".parse().unwrap()));
        assert!(!owns_connection(
            me,
            local,
            "127.0.0.2"
                .parse::<IpAddr>()
                .map(|a| SocketAddr::new(a, remote.port()))
                .unwrap()
        ));
        assert!(!owns_connection(1, local, remote)); // another process
        drop((client, server));
        let v6 = std::net::TcpListener::bind("[::1]:0");
        if let Ok(listener) = v6 {
            let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (local, remote) = (client.local_addr().unwrap(), client.peer_addr().unwrap());
            assert!(owns_connection(me, local, remote));
        }
    }
}
