//! `tcp` probe: can a TCP connection be opened?

use std::net::SocketAddr;

use super::Outcome;
use crate::result::Observation;

pub struct TcpProber {
    address: SocketAddr,
}

impl TcpProber {
    pub fn new(address: SocketAddr) -> Self {
        Self { address }
    }

    pub async fn run(&mut self) -> Outcome {
        match tokio::net::TcpStream::connect(self.address).await {
            Ok(_) => Ok(Observation::Tcp),
            Err(e) => Err(format!("connect {}: {e}", self.address)),
        }
    }
}
