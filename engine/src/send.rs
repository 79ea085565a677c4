//! Sending a postback: one HTTP exchange with timeouts, no redirects, a capped response, and an
//! SSRF guard that refuses internal destinations unless the operator allow-listed them.
//!
//! The guard sits in the DNS resolver, so the address checked is the address connected to (no
//! window for a DNS answer to change between check and connect); IP-literal URLs, which skip the
//! resolver, are checked before sending.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::request::Request;

/// Where postbacks may not go unless allow-listed.
#[derive(Debug, Clone, Default)]
pub struct Guard {
    allow: Vec<IpNet>,
}

impl Guard {
    /// A guard that lets the `allow` networks through.
    pub fn new(allow: Vec<IpNet>) -> Guard {
        Guard { allow }
    }

    /// `Err` when `ip` is internal and not allow-listed.
    pub fn check(&self, ip: IpAddr) -> Result<(), RefusedDestination> {
        if self.allow.iter().any(|net| net.contains(&ip)) {
            return Ok(());
        }
        match forbidden_kind(ip) {
            Some(kind) => Err(RefusedDestination { ip, kind }),
            None => Ok(()),
        }
    }
}

/// An internal destination the guard refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "destination {ip} is a {kind} address; postbacks may not go there unless the operator \
     allow-lists it (serve --allow-destination {ip}/32)"
)]
pub struct RefusedDestination {
    /// The address.
    pub ip: IpAddr,
    /// What kind of internal address it is, e.g. `loopback`.
    pub kind: &'static str,
}

impl RefusedDestination {
    /// The refusal of a name that resolved to this address, in words that do not reveal it.
    pub fn resolved(&self, host: &str) -> String {
        format!(
            "{host} resolves to a {} address; postbacks may not go there unless the operator \
             allow-lists it (serve --allow-destination)",
            self.kind
        )
    }
}

/// The kind of internal address `ip` is, if it is one.
fn forbidden_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_private() {
                Some("private")
            } else if v4.is_link_local() {
                Some("link-local (cloud metadata)")
            } else if v4.is_unspecified() || a == 0 {
                Some("unspecified")
            } else if a == 100 && (64..128).contains(&b) {
                Some("shared (carrier-grade NAT)")
            } else if v4.is_broadcast() || v4.is_multicast() || a >= 240 {
                Some("broadcast, multicast or reserved")
            } else if a == 192 && b == 0 && v4.octets()[2] == 0 {
                Some("IETF protocol")
            } else if a == 198 && (18..20).contains(&b) {
                Some("benchmarking")
            } else if v4.is_documentation() {
                Some("documentation")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_kind(IpAddr::V4(v4));
            }
            let segments = v6.segments();
            let [first, second, ..] = segments;
            let embedded = |high: u16, low: u16| std::net::Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if segments[..6] == [0; 6] {
                // `::a.b.c.d`: deprecated, and some stacks still route it to the IPv4 address
                // inside, so none of it is a postback's destination.
                Some("IPv4-compatible (deprecated)")
            } else if first & 0xfe00 == 0xfc00 {
                Some("unique-local (cloud metadata)")
            } else if first & 0xffc0 == 0xfe80 {
                Some("link-local")
            } else if first & 0xffc0 == 0xfec0 {
                Some("site-local (deprecated)")
            } else if v6.is_multicast() {
                Some("multicast")
            } else if first == 0x64 && second == 0xff9b {
                Some("NAT64")
            } else if first == 0x2001 && second == 0x0db8 {
                Some("documentation")
            } else if first == 0x2002 && forbidden_kind(IpAddr::V4(embedded(second, segments[2]))).is_some() {
                // 6to4 relays deliver to the IPv4 address in bits 16..48.
                Some("6to4 (an internal IPv4 address inside)")
            } else if first == 0x2001
                && second == 0
                && (forbidden_kind(IpAddr::V4(embedded(segments[2], segments[3]))).is_some()
                    || forbidden_kind(IpAddr::V4(embedded(!segments[6], !segments[7]))).is_some())
            {
                // Teredo: the server's address in bits 32..64, the client's in the last 32 bits,
                // inverted.
                Some("Teredo (an internal IPv4 address inside)")
            } else {
                None
            }
        }
    }
}

/// Name lookups under way at once. Each holds a blocking thread for as long as the system's
/// resolver takes (`getaddrinfo` cannot be stopped), so a partner whose receiver's name never
/// resolves ties up at most these, not the blocking threads that plugins and the store use.
pub const LOOKUPS: usize = 16;

/// Resolves names, a few at a time under a deadline, and drops internal addresses.
struct GuardedResolver {
    guard: Arc<Guard>,
    /// One permit per lookup under way (see [`LOOKUPS`]).
    lookups: Arc<tokio::sync::Semaphore>,
    /// How long a lookup may take, waiting for its turn included.
    timeout: Duration,
}

impl GuardedResolver {
    fn new(guard: Arc<Guard>, timeout: Duration) -> GuardedResolver {
        GuardedResolver {
            guard,
            lookups: Arc::new(tokio::sync::Semaphore::new(LOOKUPS)),
            timeout,
        }
    }
}

/// The addresses of `host`, looked up on a blocking thread while a permit of `lookups` is held.
/// The permit goes with the thread, so a lookup given up on still counts until it ends.
async fn lookup(lookups: Arc<tokio::sync::Semaphore>, host: String) -> std::io::Result<Vec<SocketAddr>> {
    use std::net::ToSocketAddrs;
    let permit = lookups
        .acquire_owned()
        .await
        .map_err(|_| std::io::Error::other("name lookups have stopped"))?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        (host.as_str(), 0).to_socket_addrs().map(Iterator::collect)
    })
    .await
    .map_err(std::io::Error::other)?
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = self.guard.clone();
        let (lookups, timeout) = (self.lookups.clone(), self.timeout);
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::time::timeout(timeout, lookup(lookups, host.clone()))
                .await
                .map_err(|_| format!("looking up {host} took longer than {}s", timeout.as_secs_f64()))??;
            let mut refused = None;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|addr| match guard.check(addr.ip()) {
                    Ok(()) => true,
                    Err(why) => {
                        refused.get_or_insert(why);
                        false
                    }
                })
                .collect();
            if allowed.is_empty() {
                // The partner reads this text: it names the kind of address, never the address,
                // so that a postback URL cannot be used to map the internal network. The
                // operator's log has the address.
                return Err(match refused {
                    Some(why) => {
                        tracing::info!(host = %host, ip = %why.ip, kind = why.kind, "refused a postback destination");
                        why.resolved(&host)
                    }
                    None => format!("{host} has no address"),
                }
                .into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// How the sender behaves.
#[derive(Debug, Clone)]
pub struct SendConfig {
    /// Time allowed to connect.
    pub connect_timeout: Duration,
    /// Time allowed for the whole exchange.
    pub timeout: Duration,
    /// Response bytes kept; the rest is not read.
    pub response_cap: usize,
}

impl Default for SendConfig {
    fn default() -> Self {
        SendConfig {
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            response_cap: 16 * 1024,
        }
    }
}

/// The receiver's answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Headers as received.
    pub headers: Vec<(String, String)>,
    /// The body up to the cap.
    pub body: Vec<u8>,
}

/// An exchange that produced no answer. The texts are what the attempt log shows.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SendError {
    /// The URL does not parse.
    #[error("invalid url {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it does not parse.
        reason: url::ParseError,
    },
    /// The URL names an internal address (the guard of names resolved is met as
    /// [`SendError::Connect`]: it refuses while connecting).
    #[error(transparent)]
    RefusedDestination(#[from] RefusedDestination),
    /// The exchange took longer than the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// No connection: refused, reset, unresolvable, TLS failure, a destination the guard
    /// refused; the text is the root cause.
    #[error("could not connect: {0}")]
    Connect(String),
    /// The answer broke off while it was read; the text is the root cause.
    #[error("the response broke off: {0}")]
    BrokeOff(String),
    /// Any other failure; the text is the root cause.
    #[error("the exchange failed: {0}")]
    Failed(String),
    /// A failure without a cause to tell, in the HTTP client's words.
    #[error("{0}")]
    Other(String),
}

/// Sends postbacks; cheap to clone, connections are pooled and reused.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    guard: Arc<Guard>,
    config: SendConfig,
    bases: Arc<Bases>,
}

/// Parsed URLs up to their query, by their text. A partner's postbacks differ in the query
/// (`https://partner.example/postback?order={OrderId}`), and parsing the rest again for every
/// postback costs more than the whole query.
#[derive(Default)]
struct Bases(std::sync::Mutex<std::collections::HashMap<Box<str>, reqwest::Url>>);

/// Most URL bases kept; past this the cache starts again.
const MAX_BASES: usize = 4096;

impl Bases {
    /// `text` parsed, exactly as [`reqwest::Url::parse`] would.
    fn parse(&self, text: &str) -> Result<reqwest::Url, url::ParseError> {
        let Some((base, query)) = text.split_once('?') else {
            return reqwest::Url::parse(text);
        };
        // Where the two ways could differ (a fragment, or characters a whole-URL parse trims or
        // drops), the URL is parsed whole.
        let plain = |part: &str| !part.bytes().any(|b| b <= b' ' || b == b'#' || b == 0x7f);
        if !plain(base) || !plain(query) {
            return reqwest::Url::parse(text);
        }
        let mut bases = self.0.lock().expect("never poisoned");
        let mut url = match bases.get(base) {
            Some(url) => url.clone(),
            None => {
                let url = reqwest::Url::parse(base)?;
                if bases.len() >= MAX_BASES {
                    bases.clear();
                }
                bases.insert(base.into(), url.clone());
                url
            }
        };
        drop(bases);
        url.set_query(Some(query));
        Ok(url)
    }
}

impl Sender {
    /// A sender with its own connection pool.
    pub fn new(guard: Guard, config: SendConfig) -> Sender {
        let guard = Arc::new(guard);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would resolve names itself, out of the guard's reach.
            .no_proxy()
            .connect_timeout(config.connect_timeout)
            .timeout(config.timeout)
            .pool_max_idle_per_host(512)
            .tcp_nodelay(true)
            .user_agent(concat!("Postwire/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(Arc::new(GuardedResolver::new(guard.clone(), config.connect_timeout)))
            .build()
            .expect("the HTTP client configuration is valid");
        Sender {
            client,
            guard,
            config,
            bases: Arc::default(),
        }
    }

    /// Sends `request` with `extra` headers (the signature) and reads the answer.
    pub async fn send(&self, request: &Request, extra: &[(&str, String)]) -> (Result<Answer, SendError>, Duration) {
        let started = Instant::now();
        let result = self.exchange(request, extra).await;
        (result, started.elapsed())
    }

    async fn exchange(&self, request: &Request, extra: &[(&str, String)]) -> Result<Answer, SendError> {
        let url = self.bases.parse(&request.url).map_err(|reason| SendError::InvalidUrl {
            url: request.url.clone(),
            reason,
        })?;
        if let Some(host) = url.host() {
            let literal = match host {
                url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
                url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
                url::Host::Domain(_) => None,
            };
            if let Some(ip) = literal {
                self.guard.check(ip)?;
            }
        }
        let method = reqwest::Method::from_bytes(request.method.as_str().as_bytes()).expect("known methods");
        let mut builder = self.client.request(method, url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_bytes());
        }
        for (name, value) in extra {
            builder = builder.header(*name, value.as_str());
        }
        if !request.body.is_empty() {
            builder = builder.body(request.body.clone());
        }
        let mut response = builder.send().await.map_err(|e| describe(&e, &self.config))?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while body.len() < self.config.response_cap {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    let room = self.config.response_cap - body.len();
                    body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                }
                Ok(None) => break,
                Err(e) => return Err(describe(&e, &self.config)),
            }
        }
        Ok(Answer { status, headers, body })
    }
}

/// Words for a failed exchange, with the root cause.
fn describe(error: &reqwest::Error, config: &SendConfig) -> SendError {
    let mut cause = String::new();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        cause = inner.to_string();
        source = inner.source();
    }
    if error.is_timeout() {
        SendError::Timeout(config.timeout)
    } else if error.is_connect() {
        SendError::Connect(cause)
    } else if error.is_body() || error.is_decode() {
        SendError::BrokeOff(cause)
    } else if cause.is_empty() {
        SendError::Other(error.to_string())
    } else {
        SendError::Failed(cause)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parsed_by_their_base_are_parsed_as_whole() {
        let bases = Bases::default();
        for text in [
            "http://127.0.0.1:8080/hook?inquiry=1000123",
            "http://127.0.0.1:8080/hook?inquiry=1000124&amount=12.50",
            "https://partner.example?order=ORD-1",
            "https://partner.example/p/a%20b?x=\u{e9}t\u{e9}&y=a|b\\c\"d'<e>",
            "https://partner.example/p?x=1#frag",
            "https://partner.example/p#frag?x=1",
            "https://partner.example/p?x= 1 ",
            "https://partner.example/p?x=\t1",
            "https://Partner.EXAMPLE:443/./a/../p?",
            "https://partner.example/p??x=%zz&y=%41",
            "https://b\u{fc}cher.example/p?x=1",
            "http://[::1]:8080/p?q=1",
            "http://partner.example/p?x=1",
        ] {
            for _ in 0..2 {
                // Twice: once parsing the base, once from the cache.
                assert_eq!(
                    bases.parse(text).map(|u| u.to_string()),
                    reqwest::Url::parse(text).map(|u| u.to_string()),
                    "{text}"
                );
            }
        }
        assert!(bases.parse("https://exa mple/p?x=1").is_err());
        assert!(bases.parse("not a url?x=1").is_err());
    }

    #[test]
    fn refuses_internal_addresses() {
        let guard = Guard::default();
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(guard.check(ip.parse().unwrap()).is_err(), "{ip} should be refused");
        }
        for ip in ["93.184.216.34", "2606:4700::1111"] {
            assert!(guard.check(ip.parse().unwrap()).is_ok(), "{ip} should pass");
        }
        let allowed = Guard::new(vec!["127.0.0.1/32".parse().unwrap()]);
        assert!(allowed.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(allowed.check("127.0.0.2".parse().unwrap()).is_err());
    }

    /// Every other spelling of an internal address: IPv6 forms with an IPv4 address inside, the
    /// deprecated site-local range and the documentation ranges.
    #[test]
    fn refuses_internal_addresses_in_every_spelling() {
        let guard = Guard::default();
        for (ip, kind) in [
            // IPv4-compatible, whatever the address inside.
            ("::127.0.0.1", "IPv4-compatible (deprecated)"),
            ("::10.0.0.1", "IPv4-compatible (deprecated)"),
            ("::169.254.169.254", "IPv4-compatible (deprecated)"),
            ("::93.184.216.34", "IPv4-compatible (deprecated)"),
            // 6to4 with an internal address inside: 2002:AABB:CCDD:: carries AA.BB.CC.DD.
            ("2002:7f00:1::", "6to4 (an internal IPv4 address inside)"),
            ("2002:a9fe:a9fe::1", "6to4 (an internal IPv4 address inside)"),
            ("2002:c0a8:0101:1::5", "6to4 (an internal IPv4 address inside)"),
            // Teredo: the client's address (127.0.0.1) inverted in the last 32 bits, or an
            // internal server (10.0.0.1) in bits 32..64.
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                "Teredo (an internal IPv4 address inside)",
            ),
            (
                "2001:0:a00:1:8000:63bf:a2bb:fe8d",
                "Teredo (an internal IPv4 address inside)",
            ),
            ("fec0::1", "site-local (deprecated)"),
            ("feff:ffff::1", "site-local (deprecated)"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.7", "documentation"),
            ("203.0.113.255", "documentation"),
            ("2001:db8::1", "documentation"),
            ("::ffff:203.0.113.9", "documentation"),
        ] {
            let refused = guard.check(ip.parse().unwrap()).expect_err(ip);
            assert_eq!(refused.kind, kind, "{ip}");
        }
        // The same forms around public addresses are public: 6to4 of 93.184.216.34, Teredo
        // with a public server and client (93.184.216.34 inverted).
        for ip in [
            "2002:5db8:d822::1",
            "2001:0:4136:e378:8000:63bf:a247:27dd",
            "2001:db9::1",
            "2001:1::1",
            "203.0.114.1",
            "192.0.3.1",
        ] {
            assert!(guard.check(ip.parse().unwrap()).is_ok(), "{ip} should pass");
        }
    }

    /// A name that resolves to an internal address is refused in words that do not reveal the
    /// address.
    #[test]
    fn a_refused_name_does_not_reveal_its_address() {
        let refused = Guard::default().check("10.20.30.40".parse().unwrap()).unwrap_err();
        let text = refused.resolved("db.internal.example");
        assert_eq!(
            text,
            "db.internal.example resolves to a private address; postbacks may not go there unless \
             the operator allow-lists it (serve --allow-destination)"
        );
        assert!(!text.contains("10.20"), "{text}");
    }

    /// Through the resolver, as a postback meets it: the error names the host, never the address.
    #[tokio::test]
    async fn the_resolver_refuses_without_the_address() {
        use reqwest::dns::Resolve;
        let resolver = GuardedResolver::new(Arc::new(Guard::default()), Duration::from_secs(5));
        let error = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost resolved through the guard"),
            Err(error) => error.to_string(),
        };
        assert!(error.starts_with("localhost resolves to a loopback address"), "{error}");
        assert!(!error.contains("127.0.0.1") && !error.contains("::1"), "{error}");
    }

    /// Lookups run a few at a time: with every permit taken (lookups that hang), the next one
    /// gives up at the deadline with a clear reason instead of taking another thread.
    #[tokio::test]
    async fn lookups_are_bounded_and_give_up_at_the_deadline() {
        use reqwest::dns::Resolve;
        let resolver = GuardedResolver::new(
            Arc::new(Guard::new(vec![
                "127.0.0.0/8".parse().unwrap(),
                "::1/128".parse().unwrap(),
            ])),
            Duration::from_millis(300),
        );
        assert!(resolver.resolve("localhost".parse().unwrap()).await.is_ok());
        let hung = resolver
            .lookups
            .clone()
            .acquire_many_owned(LOOKUPS as u32)
            .await
            .unwrap();
        let error = match resolver.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("a lookup ran beyond the bound"),
            Err(error) => error.to_string(),
        };
        assert_eq!(error, "looking up localhost took longer than 0.3s");
        drop(hung);
        assert!(resolver.resolve("localhost".parse().unwrap()).await.is_ok());
    }
}
