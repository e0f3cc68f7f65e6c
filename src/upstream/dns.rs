//! Name resolution that never blocks a worker. IP literals need none. Other names go
//! to one process-wide resolver thread (the system resolver, `getaddrinfo`, is
//! blocking) over a channel; the answer is cached per worker for a minute. A worker
//! awaiting an answer keeps serving its other connections.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(60);

type Answer = Result<Vec<SocketAddr>, String>;

struct Query {
    host: String,
    port: u16,
    reply: flume::Sender<Answer>,
}

fn resolver() -> &'static flume::Sender<Query> {
    static TX: OnceLock<flume::Sender<Query>> = OnceLock::new();
    TX.get_or_init(|| {
        let (tx, rx) = flume::unbounded::<Query>();
        let spawned = std::thread::Builder::new().name("clawgate-dns".into()).spawn(move || {
            while let Ok(q) = rx.recv() {
                #[allow(clippy::disallowed_methods)] // this thread exists to block on DNS
                let answer = (q.host.as_str(), q.port)
                    .to_socket_addrs()
                    .map(|it| it.collect::<Vec<_>>())
                    .map_err(|e| format!("cannot resolve {}: {e}", q.host));
                let _ = q.reply.send(answer);
            }
        });
        if spawned.is_err() {
            crate::log::error("cannot start the DNS thread; only IP literals will resolve");
        }
        tx
    })
}

/// Resolved addresses of `(host, port)` and when they were resolved.
type Entries = HashMap<(String, u16), (Vec<SocketAddr>, Instant)>;

/// A worker's DNS cache.
#[derive(Default)]
pub struct Cache {
    entries: RefCell<Entries>,
}

impl Cache {
    /// Addresses for `host:port`, from the cache or the resolver thread.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let key = (host.to_string(), port);
        if let Some((addrs, at)) = self.entries.borrow().get(&key) {
            if at.elapsed() < TTL {
                return Ok(addrs.clone());
            }
        }
        let (tx, rx) = flume::bounded(1);
        resolver()
            .send(Query { host: host.to_string(), port, reply: tx })
            .map_err(|_| "the DNS thread is gone".to_string())?;
        let addrs = rx.recv_async().await.map_err(|_| "the DNS thread is gone".to_string())??;
        if addrs.is_empty() {
            return Err(format!("{host} has no addresses"));
        }
        self.entries.borrow_mut().insert(key, (addrs.clone(), Instant::now()));
        Ok(addrs)
    }
}
