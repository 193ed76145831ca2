//! One etcd client per endpoint, used one at a time and sticky: the balancing channel of one
//! client over every endpoint keeps sending requests to a member it cannot connect to (a
//! partitioned site), so a third of them fail. Here a request that fails moves every later one
//! to the next endpoint; reads are retried on it at once, writes only when the request never
//! left (the connection could not be made), since a timed-out write may have been applied.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use etcd_client::{Client, ConnectOptions, Error};

pub struct EtcdClients {
    clients: Vec<Client>,
    current: AtomicUsize,
}

impl EtcdClients {
    /// A client per endpoint (connections are made lazily, at the first request).
    pub async fn connect(endpoints: &[String], options: &ConnectOptions) -> Result<Self, Error> {
        let mut clients = Vec::with_capacity(endpoints.len());
        let mut last = None;
        for e in endpoints {
            match Client::connect([e.as_str()], Some(options.clone())).await {
                Ok(c) => clients.push(c),
                Err(err) => last = Some(err),
            }
        }
        match (clients.is_empty(), last) {
            (true, Some(e)) => Err(e),
            (true, None) => Err(Error::InvalidArgs("no etcd endpoints".into())),
            _ => Ok(EtcdClients {
                clients,
                current: AtomicUsize::new(0),
            }),
        }
    }

    /// The endpoint in use and its client.
    pub fn pick(&self) -> (usize, Client) {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        (i, self.clients[i].clone())
    }

    /// A request through endpoint `i` failed: later ones use the next endpoint (unless another
    /// caller moved on already).
    pub fn failed(&self, i: usize) {
        let next = (i + 1) % self.clients.len();
        let _ = self
            .current
            .compare_exchange(i, next, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// A read: tried on each endpoint in turn until one answers.
    pub async fn read<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        self.attempt(f, |_| true).await
    }

    /// A write: retried on the next endpoint only when it never left.
    pub async fn write<T, F, Fut>(&self, f: F) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        self.attempt(f, never_sent).await
    }

    /// `f` on the endpoint in use; after a failure the next endpoint is used, and `f` is tried
    /// there too while `retry` says the failure allows it (at most once per endpoint).
    async fn attempt<T, F, Fut>(&self, f: F, retry: impl Fn(&Error) -> bool) -> Result<T, Error>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let mut last = None;
        for _ in 0..self.clients.len() {
            let (i, c) = self.pick();
            match f(c).await {
                Ok(v) => return Ok(v),
                Err(e) => {
                    self.failed(i);
                    if !retry(&e) {
                        return Err(e);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidArgs("no etcd endpoints".into())))
    }
}

/// The connection to the member could not be made: the request was never sent.
fn never_sent(e: &Error) -> bool {
    match e {
        Error::TransportError(_) => true,
        // tonic's code is not re-exported by etcd-client: compare by name.
        Error::GRpcStatus(s) => {
            format!("{:?}", s.code()) == "Unavailable" && s.message().contains("connect")
        }
        _ => false,
    }
}
