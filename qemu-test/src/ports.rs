//! Loopback port allocation for forwards and socket LANs.

use std::net::{Ipv4Addr, TcpListener};

use crate::error::{Error, Result};

/// A TCP port that was free on 127.0.0.1 a moment ago: the kernel picks it
/// when the harness binds `127.0.0.1:0`, and the listener is closed before
/// this returns. Another process may take it in between; tests that hit
/// that race see QEMU fail to start with "Address already in use".
pub fn free_local_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| Error::io("bind", "127.0.0.1:0", e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("read the address of", "127.0.0.1:0", e))?;
    Ok(addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gives_distinct_bindable_ports() {
        let a = free_local_port().expect("port");
        let b = free_local_port().expect("port");
        assert_ne!(a, 0);
        assert_ne!(a, b);
        TcpListener::bind((Ipv4Addr::LOCALHOST, a)).expect("rebind");
    }
}
