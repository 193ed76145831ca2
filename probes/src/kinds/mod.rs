//! The probe kinds. Each kind keeps whatever connection state it needs between runs and
//! drops it after any failure, so the next run reconnects from scratch.

mod dns;
mod http;
mod postgres;
mod redis;
mod tcp;

use crate::result::Observation;
use crate::target::ProbeSpec;

/// Outcome of one run before timing is attached: `Err` is a failed probe's reason (data, not a
/// program error).
pub type Outcome = Result<Observation, String>;

/// One target's prober. An enum (not a trait object) so each run is a plain `async fn`.
pub enum Prober {
    Http(http::HttpProber),
    Tcp(tcp::TcpProber),
    Postgres(postgres::PgProber),
    Redis(redis::RedisProber),
    Dns(dns::DnsProber),
}

impl Prober {
    pub fn new(spec: &ProbeSpec, http: &reqwest::Client) -> Prober {
        match spec {
            ProbeSpec::Http(s) => Prober::Http(http::HttpProber::new(s.clone(), http.clone())),
            ProbeSpec::Tcp { address } => Prober::Tcp(tcp::TcpProber::new(*address)),
            ProbeSpec::Postgres(s) => Prober::Postgres(postgres::PgProber::new(s.clone())),
            ProbeSpec::Redis(s) => Prober::Redis(redis::RedisProber::new(s.clone())),
            ProbeSpec::Dns(s) => Prober::Dns(dns::DnsProber::new(s.clone())),
        }
    }

    pub async fn run(&mut self, timeout: std::time::Duration) -> Outcome {
        match self {
            Prober::Http(p) => p.run().await,
            Prober::Tcp(p) => p.run().await,
            Prober::Postgres(p) => p.run(timeout).await,
            Prober::Redis(p) => p.run().await,
            Prober::Dns(p) => p.run(timeout).await,
        }
    }

    /// Forget cached connections (after a timeout the connection state is unknown).
    pub fn reset(&mut self) {
        match self {
            Prober::Postgres(p) => p.reset(),
            Prober::Redis(p) => p.reset(),
            Prober::Http(_) | Prober::Tcp(_) | Prober::Dns(_) => {}
        }
    }
}

/// Build the HTTP client shared by all HTTP probes (rustls with the ring provider).
pub fn http_client() -> reqwest::Client {
    // Installing twice is harmless: the first provider stays.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        // Enough idle connections that many targets on one host reuse them instead of
        // opening (and leaving in TIME_WAIT) a connection per probe.
        .pool_max_idle_per_host(64)
        .build()
        .unwrap_or_else(|e| {
            tracing::warn!("HTTP client with custom settings failed ({e}); using defaults");
            reqwest::Client::new()
        })
}
