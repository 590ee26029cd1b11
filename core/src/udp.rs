//! UDP sockets for the QUIC endpoints, with kernel buffers sized for bursts.
//!
//! Linux gives a UDP socket about 208 KiB of receive buffer by default. When a whole
//! fleet downloads at once, the artifact server's socket (thousands of handshakes,
//! keep-alives and acknowledgements) and a node's socket (a bundle arriving at the
//! full congestion window) overflow that whenever their task waits a few milliseconds
//! for a CPU; the kernel then drops datagrams, QUIC backs off, and connections time out.
//! quic-go and ngtcp2 ask for several MiB for the same reason.

use std::io;
use std::net::{SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Receive and send buffer the QUIC artifact server asks the kernel for. More is worse:
/// with 8 MiB, a fleet's burst of handshakes and keep-alives queued for seconds instead
/// of being dropped, and more connections reached their idle timeout.
pub const SERVER_BUFFER_BYTES: usize = 2 * 1024 * 1024;

/// Receive and send buffer a node's download endpoint asks the kernel for: room for
/// a few MiB of a bundle while the node's task waits for a CPU.
pub const CLIENT_BUFFER_BYTES: usize = 2 * 1024 * 1024;

/// A bound UDP socket and the receive buffer the kernel granted it.
#[derive(Debug)]
pub struct BoundSocket {
    /// The socket, ready for `quinn::Endpoint::new`.
    pub socket: UdpSocket,
    /// Receive buffer in bytes, as the kernel reports it (Linux reports double the
    /// usable size, and caps requests at `net.core.rmem_max`).
    pub receive_buffer_bytes: usize,
}

impl BoundSocket {
    /// Whether the kernel granted less than `wanted` bytes of receive buffer.
    pub fn receive_buffer_short_of(&self, wanted: usize) -> bool {
        self.receive_buffer_bytes < wanted
    }
}

/// Binds a UDP socket on `address`, asking for `buffer_bytes` of receive and of send
/// buffer first. The kernel may grant less (see [`BoundSocket::receive_buffer_bytes`]);
/// only a failure to create or bind the socket is an error.
pub fn bind_with_buffers(address: SocketAddr, buffer_bytes: usize) -> io::Result<BoundSocket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    // A refused size leaves the default in place, which works, only with more loss.
    let _ = socket.set_recv_buffer_size(buffer_bytes);
    let _ = socket.set_send_buffer_size(buffer_bytes);
    socket.bind(&address.into())?;
    let receive_buffer_bytes = socket.recv_buffer_size()?;
    Ok(BoundSocket {
        socket: socket.into(),
        receive_buffer_bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_an_ephemeral_port_with_at_least_the_default_buffer() {
        let bound = bind_with_buffers(([127, 0, 0, 1], 0).into(), CLIENT_BUFFER_BYTES)
            .expect("bind on loopback");
        let address = bound.socket.local_addr().expect("local address");
        assert_ne!(address.port(), 0);
        assert!(bound.receive_buffer_bytes > 0);
    }

    #[test]
    fn a_socket_sends_to_another() {
        let receiver = bind_with_buffers(([127, 0, 0, 1], 0).into(), CLIENT_BUFFER_BYTES)
            .expect("bind receiver");
        let sender = bind_with_buffers(([127, 0, 0, 1], 0).into(), CLIENT_BUFFER_BYTES)
            .expect("bind sender");
        let to = receiver.socket.local_addr().expect("receiver address");
        sender.socket.send_to(b"ping", to).expect("send");
        let mut buffer = [0u8; 8];
        let (read, _) = receiver.socket.recv_from(&mut buffer).expect("receive");
        assert_eq!(&buffer[..read], b"ping");
    }
}
