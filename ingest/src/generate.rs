//! Realistic span data at scale, with the true trace trees kept aside: many concurrent
//! multi-service traces through sidecar proxies and a VXLAN underlay between nodes, as the
//! agents on those nodes would record them — random initial sequence numbers, syscall trace
//! ids per thread, clock skew between agents, keep-alive connections reused across traces,
//! retried calls, and optionally lost spans and sequence numbers that collide by chance.
//!
//! The model: service 0 is the entry; each service visit calls up to `max_calls` services
//! with a higher index. A service with a sidecar receives and sends through it (the sidecar
//! is an async proxy: its syscall ids never chain, it passes X-Request-ID on, generating one
//! when a request has none). A load generator with a few threads and keep-alive connections
//! sends the root requests, so its calls chain by syscall id without being one trace.

use std::{net::IpAddr, sync::Arc};

use arrow::{
    array::{BooleanArray, RecordBatch},
    compute::filter_record_batch,
};
use wiretrace_packet::{Tunnel, TunnelKind};

use crate::{
    batch::SpanBatchBuilder,
    capture::{CapturePoint, NicRole},
    span::{PacketSeen, ProcessSeen, Seen, Span},
};

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    /// Random seed: the same seed gives the same data.
    pub seed: u64,
    /// Unix µs of the first trace.
    pub start_us: i64,
    /// Traces start evenly spread over this many µs.
    pub spread_us: i64,
    /// Nodes (one agent each).
    pub nodes: u8,
    /// Services.
    pub services: usize,
    /// Most downstream calls per service visit.
    pub max_calls: usize,
    /// Share of services behind a sidecar, 0..=1.
    pub sidecar_share: f64,
    /// Share of calls answered 503 once and retried, 0..=1.
    pub retry_share: f64,
    /// Share of spans lost (never captured), 0..=1.
    pub lost_share: f64,
    /// Share of new connections that copy the previous connection's initial sequence numbers.
    pub collide_share: f64,
    /// Largest clock offset of a node, ± µs.
    pub max_skew_us: i64,
}

impl Default for GenConfig {
    fn default() -> Self {
        Self {
            seed: 1,
            start_us: 1_790_000_000_000_000,
            spread_us: 1_000_000,
            nodes: 3,
            services: 8,
            max_calls: 3,
            sidecar_share: 0.5,
            retry_share: 0.05,
            lost_share: 0.0,
            collide_share: 0.0,
            max_skew_us: 3_000,
        }
    }
}

/// The truth about one generated span.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Truth {
    /// Its `_id`.
    pub id: i64,
    /// `_id` of its trace's root span.
    pub trace: i64,
    /// `_id` of its parent.
    pub parent: Option<i64>,
    /// Whether it was captured (lost spans are not in the batches).
    pub kept: bool,
}

/// Spans of some traces: `l7_flow_log` batches (one per agent) and the truth for every span.
#[derive(Debug, Clone, Default)]
pub struct Generated {
    /// The rows.
    pub batches: Vec<RecordBatch>,
    /// What assembly should find, lost spans included.
    pub truth: Vec<Truth>,
}

/// SplitMix64: small, fast, and reproducible.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }

    fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / ((1u64 << 53) as f64) < p
    }
}

/// One traced process.
#[derive(Debug, Clone)]
struct Proc {
    node: u8,
    pid: u32,
    comm: Arc<str>,
    ip: Arc<str>,
    /// An async proxy: syscall ids never chain.
    proxy: bool,
}

/// A kept-alive TCP connection.
#[derive(Debug, Clone)]
struct Conn {
    id: u64,
    port: u16,
    busy_until: i64,
    req_seq: u32,
    resp_seq: u32,
}

/// A service: its app, and its sidecar if it has one (indexes into the processes).
#[derive(Debug, Clone)]
struct Service {
    name: &'static str,
    app: usize,
    sidecar: Option<usize>,
}

/// A span under construction: where it was recorded, and its true parent.
struct Pending {
    node: u8,
    span: Span,
    parent: Option<usize>,
    trace: usize,
}

/// What a server does with a request.
#[derive(Debug, Clone)]
enum Action {
    /// An app handles it, calling other services.
    Visit(usize),
    /// A proxy passes it to `to`, which then acts.
    Forward(usize, Box<Action>),
    /// Answer 503 at once.
    Fail,
}

/// What travels with a request.
#[derive(Debug, Clone)]
struct Request {
    trace: usize,
    x_request_id: Option<String>,
    path: String,
    host: String,
}

/// What a server answered: its syscall ids, when, with which status and X-Request-ID.
struct Answer {
    ids: (u64, u64),
    end: i64,
    status: u16,
    x_request_id: Option<String>,
}

const NAMES: [&str; 12] = [
    "productpage",
    "reviews",
    "ratings",
    "details",
    "cart",
    "checkout",
    "payment",
    "shipping",
    "catalog",
    "users",
    "search",
    "ads",
];

/// The index of the load generator's process.
const LOADGEN: usize = 0;

/// Generates traces chunk by chunk; connections, ids and clocks carry over between chunks.
#[derive(Debug)]
pub struct Generator {
    cfg: GenConfig,
    rng: Rng,
    procs: Vec<Proc>,
    services: Vec<Service>,
    /// Whether each service's app passes X-Request-ID on.
    propagates: Vec<bool>,
    /// Open syscall id of each load generator thread.
    loadgen: Vec<u64>,
    /// Kept-alive connections per (client, server) process.
    conns: rustc_hash::FxHashMap<(usize, usize), Vec<Conn>>,
    skew: Vec<i64>,
    next_sys: u64,
    next_conn: u64,
    last_isn: (u32, u32),
    traces_done: usize,
    builders: Vec<SpanBatchBuilder>,
}

impl Generator {
    /// A generator for `cfg`.
    pub fn new(cfg: GenConfig) -> Self {
        let mut rng = Rng(cfg.seed);
        let nodes = cfg.nodes.max(1);
        let skew = (0..nodes)
            .map(|_| rng.range(-cfg.max_skew_us, cfg.max_skew_us))
            .collect();
        let mut procs = vec![Proc {
            node: 0,
            pid: 500,
            comm: "loadgen".into(),
            ip: "10.244.0.250".into(),
            proxy: false,
        }];
        let mut services = Vec::new();
        let mut propagates = Vec::new();
        for k in 0..cfg.services.max(1) {
            let node = (k % nodes as usize) as u8;
            let ip: Arc<str> = format!("10.244.{node}.{}", k + 2).into();
            let name = NAMES[k % NAMES.len()];
            procs.push(Proc {
                node,
                pid: 1000 + 10 * k as u32,
                comm: name.into(),
                ip: Arc::clone(&ip),
                proxy: false,
            });
            let app = procs.len() - 1;
            let sidecar = rng.chance(cfg.sidecar_share).then(|| {
                procs.push(Proc {
                    node,
                    pid: 1001 + 10 * k as u32,
                    comm: "envoy".into(),
                    ip,
                    proxy: true,
                });
                procs.len() - 1
            });
            services.push(Service { name, app, sidecar });
            propagates.push(rng.chance(0.8));
        }
        let builders = (0..nodes)
            .map(|n| SpanBatchBuilder::new(n + 1, format!("node{}", n + 1)))
            .collect();
        Self {
            rng,
            procs,
            services,
            propagates,
            loadgen: vec![0; 8],
            conns: Default::default(),
            skew,
            next_sys: 0,
            next_conn: 0,
            last_isn: (1, 1),
            traces_done: 0,
            builders,
            cfg,
        }
    }

    /// The next `count` of `total` traces (`total` sets their spacing over `spread_us`).
    pub fn traces(&mut self, count: usize, total: usize) -> Generated {
        let mut out: Vec<Pending> = Vec::new();
        for _ in 0..count {
            let t = self.traces_done;
            self.traces_done += 1;
            let start = self.cfg.start_us
                + (i128::from(self.cfg.spread_us) * t as i128 / total.max(1) as i128) as i64;
            let thread = self.rng.below(self.loadgen.len() as u64) as usize;
            let open = self.loadgen[thread];
            let resp_id = self.sys_id();
            self.loadgen[thread] = resp_id;
            let req = Request {
                trace: t,
                x_request_id: None,
                path: String::new(),
                host: String::new(),
            };
            self.call(
                &mut out,
                None,
                LOADGEN,
                0,
                start,
                &req,
                (open, resp_id),
                false,
            );
        }
        self.finish(out)
    }

    fn sys_id(&mut self) -> u64 {
        self.next_sys += 1;
        self.next_sys
    }

    /// Fresh ids that chain to nothing (an async proxy's).
    fn proxy_ids(&mut self) -> (u64, u64) {
        (self.sys_id(), self.sys_id())
    }

    fn entry(&self, svc: usize, fail: bool) -> (usize, Action) {
        let s = &self.services[svc];
        let then = if fail {
            Action::Fail
        } else {
            Action::Visit(svc)
        };
        match s.sidecar {
            Some(p) => (p, Action::Forward(s.app, Box::new(then))),
            None => (s.app, then),
        }
    }

    /// Process `from` (of service `from_svc`, or the load generator) calls service `svc`,
    /// through `from`'s sidecar if it has one. Returns the client span's end (true time).
    #[allow(clippy::too_many_arguments)]
    fn call(
        &mut self,
        out: &mut Vec<Pending>,
        parent: Option<usize>,
        from: usize,
        svc: usize,
        t0: i64,
        req: &Request,
        ids: (u64, u64),
        fail: bool,
    ) -> i64 {
        let (to, then) = self.entry(svc, fail);
        let req = Request {
            path: format!("/{}/{}", self.services[svc].name, self.rng.below(1000)),
            host: format!("{}:9080", self.services[svc].name),
            ..req.clone()
        };
        let own_sidecar = self
            .services
            .iter()
            .find(|s| s.app == from)
            .and_then(|s| s.sidecar);
        let (to, action) = match own_sidecar {
            Some(p) => (p, Action::Forward(to, Box::new(then))),
            None => (to, then),
        };
        self.hop(out, parent, from, to, t0, &req, ids, &action).0
    }

    /// Draws a free kept-alive connection from `from` to `to` at `t`, or opens one.
    fn connection(&mut self, from: usize, to: usize, t: i64) -> Conn {
        let pool = self.conns.entry((from, to)).or_default();
        if let Some(k) = pool.iter().position(|c| c.busy_until < t) {
            return pool.swap_remove(k);
        }
        self.next_conn += 1;
        let isn = if self.rng.chance(self.cfg.collide_share) {
            self.last_isn
        } else {
            (self.rng.next() as u32, self.rng.next() as u32)
        };
        self.last_isn = isn;
        Conn {
            id: self.next_conn,
            port: 32768 + (self.next_conn % 28000) as u16,
            busy_until: 0,
            req_seq: isn.0.wrapping_add(1),
            resp_seq: isn.1.wrapping_add(1),
        }
    }

    /// One TCP exchange from process `from` to process `to` starting at `t0` (true time):
    /// the client span, the network spans on the path, the server span, then what the server
    /// does (`action`). Returns the client span's end and the answer.
    #[allow(clippy::too_many_arguments)]
    fn hop(
        &mut self,
        out: &mut Vec<Pending>,
        parent: Option<usize>,
        from: usize,
        to: usize,
        t0: i64,
        req: &Request,
        client_ids: (u64, u64),
        action: &Action,
    ) -> (i64, Answer) {
        let (f, s) = (self.procs[from].clone(), self.procs[to].clone());
        let mut points: Vec<(&'static str, u8)> = vec![("c-p", f.node)];
        if f.ip != s.ip {
            points.push(("c", f.node));
            if f.node != s.node {
                points.push(("c-nd", f.node));
                points.push(("s-nd", s.node));
            }
            points.push(("s", s.node));
        }
        points.push(("s-p", s.node));
        let mut conn = self.connection(from, to, t0);
        let server_port = match (s.proxy, f.ip == s.ip) {
            (true, true) => 15001,
            (true, false) => 15006,
            (false, _) => 9080,
        };
        let base = out.len();
        let mut t = t0;
        for (k, &(point, node)) in points.iter().enumerate() {
            if k > 0 {
                t += self.rng.range(5, 200);
            }
            let seen = if point == "c-p" || point == "s-p" {
                let p = if point == "c-p" { &f } else { &s };
                Seen::Process(ProcessSeen {
                    syscall_trace_id_request: 0,
                    syscall_trace_id_response: 0,
                    thread_0: p.pid + 1 + (conn.id % 4) as u32,
                    thread_1: p.pid + 1 + (conn.id % 4) as u32,
                    cap_seq_0: 1,
                    cap_seq_1: 2,
                    pid: p.pid,
                    comm: Arc::clone(&p.comm),
                })
            } else {
                let node_nic = point.ends_with("nd");
                let tunnel = node_nic.then(|| Tunnel {
                    kind: TunnelKind::Vxlan,
                    id: Some(42),
                    outer_src: IpAddr::from([192, 168, 0, f.node + 1]),
                    outer_dst: IpAddr::from([192, 168, 0, s.node + 1]),
                });
                let nic = if node_nic {
                    "eth0".to_string()
                } else {
                    let pod = if point == "c" { &f } else { &s };
                    format!("veth{}", pod.pid)
                };
                Seen::Packet(PacketSeen {
                    point: Arc::new(CapturePoint {
                        netns: "host".into(),
                        nic,
                        role: if node_nic {
                            NicRole::Node
                        } else {
                            NicRole::Pod
                        },
                    }),
                    tunnel,
                    headers: Vec::new(),
                })
            };
            out.push(Pending {
                node,
                parent: if k == 0 { parent } else { Some(base + k - 1) },
                trace: req.trace,
                span: Span {
                    start_us: t,
                    end_us: t,
                    observation_point: point,
                    client: (Arc::clone(&f.ip), conn.port),
                    server: (Arc::clone(&s.ip), server_port),
                    version: "1.1",
                    method: "GET".into(),
                    host: Some(req.host.clone()),
                    path: req.path.clone(),
                    status: 200,
                    reason: String::new(),
                    request_len: 200,
                    response_len: 1000,
                    req_tcp_seq: conn.req_seq,
                    resp_tcp_seq: conn.resp_seq,
                    x_request_id: (req.x_request_id.clone(), None),
                    trace_id: None,
                    span_id: None,
                    parent_span_id: None,
                    flow_id: conn.id,
                    seen,
                },
            });
        }
        let server = base + points.len() - 1;
        let answer = self.serve(out, server, to, t, req, action);
        // The response travels back through the same points.
        let mut end = answer.end;
        for k in (0..points.len()).rev() {
            if k + 1 < points.len() {
                end += self.rng.range(5, 200);
            }
            let p = &mut out[base + k];
            p.span.end_us = end;
            p.span.status = answer.status;
            if answer.status >= 400 {
                p.span.reason = "Service Unavailable".into();
            }
            p.span.x_request_id.1 = answer.x_request_id.clone();
            if let Seen::Process(ps) = &mut p.span.seen {
                let ids = if k == 0 { client_ids } else { answer.ids };
                ps.syscall_trace_id_request = ids.0;
                ps.syscall_trace_id_response = ids.1;
            }
        }
        conn.busy_until = end;
        conn.req_seq = conn.req_seq.wrapping_add(200);
        conn.resp_seq = conn.resp_seq.wrapping_add(1000);
        self.conns.entry((from, to)).or_default().push(conn);
        (end, answer)
    }

    /// Process `proc` serves a request that arrived at `t` (its server span is `server`).
    fn serve(
        &mut self,
        out: &mut Vec<Pending>,
        server: usize,
        proc: usize,
        t: i64,
        req: &Request,
        action: &Action,
    ) -> Answer {
        match action {
            Action::Fail => {
                let id = if self.procs[proc].proxy {
                    self.proxy_ids()
                } else {
                    let id = self.sys_id();
                    (id, id)
                };
                Answer {
                    ids: id,
                    end: t + self.rng.range(20, 200),
                    status: 503,
                    x_request_id: None,
                }
            }
            Action::Forward(to, then) => {
                // A proxy without an X-Request-ID makes one and returns it in the response.
                let made = req
                    .x_request_id
                    .is_none()
                    .then(|| format!("{:016x}{:016x}", self.rng.next(), self.rng.next()));
                let fwd = Request {
                    x_request_id: req.x_request_id.clone().or_else(|| made.clone()),
                    ..req.clone()
                };
                let t0 = t + self.rng.range(10, 60);
                let ids = self.proxy_ids();
                let (end, answer) = self.hop(out, Some(server), proc, *to, t0, &fwd, ids, then);
                Answer {
                    ids: self.proxy_ids(),
                    end: end + self.rng.range(10, 60),
                    status: answer.status,
                    x_request_id: made.or(answer.x_request_id),
                }
            }
            Action::Visit(svc) => {
                let svc = *svc;
                let first = self.sys_id();
                let mut cur = first;
                let mut t = t + self.rng.range(50, 500);
                let later = self.services.len() - svc - 1;
                let calls = if later == 0 {
                    0
                } else {
                    self.rng.below(self.cfg.max_calls as u64 + 1) as usize
                };
                let down = Request {
                    x_request_id: req.x_request_id.clone().filter(|_| self.propagates[svc]),
                    ..req.clone()
                };
                for _ in 0..calls {
                    let target = svc + 1 + self.rng.below(later as u64) as usize;
                    let retry = self.rng.chance(self.cfg.retry_share);
                    for fail in [true, false].into_iter().skip(usize::from(!retry)) {
                        let next = self.sys_id();
                        let end =
                            self.call(out, Some(server), proc, target, t, &down, (cur, next), fail);
                        cur = next;
                        t = end + self.rng.range(10, 100);
                    }
                }
                Answer {
                    ids: (first, cur),
                    end: t + self.rng.range(50, 500),
                    status: 200,
                    x_request_id: None,
                }
            }
        }
    }

    /// Node clocks applied, `_id`s assigned, lost spans dropped.
    fn finish(&mut self, mut out: Vec<Pending>) -> Generated {
        let nodes = self.builders.len();
        let mut per_node: Vec<Vec<usize>> = vec![Vec::new(); nodes];
        for (i, p) in out.iter_mut().enumerate() {
            let skew = self.skew[p.node as usize];
            p.span.start_us += skew;
            p.span.end_us += skew;
            per_node[p.node as usize].push(i);
        }
        let mut ids = vec![0i64; out.len()];
        let mut batches = Vec::new();
        let mut kept = vec![true; out.len()];
        for k in kept.iter_mut() {
            *k = !self.rng.chance(self.cfg.lost_share);
        }
        for (node, members) in per_node.iter().enumerate() {
            if members.is_empty() {
                continue;
            }
            let spans: Vec<Span> = members.iter().map(|&i| out[i].span.clone()).collect();
            let batch = self.builders[node]
                .build(&spans)
                .expect("generated spans fit the schema");
            let id_col = batch
                .column_by_name("_id")
                .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int64Array>())
                .expect("_id is Int64");
            for (k, &i) in members.iter().enumerate() {
                ids[i] = id_col.value(k);
            }
            let mask = BooleanArray::from(members.iter().map(|&i| kept[i]).collect::<Vec<_>>());
            batches.push(filter_record_batch(&batch, &mask).expect("mask matches the batch"));
        }
        // Each trace's root is its first span.
        let mut root_of: rustc_hash::FxHashMap<usize, i64> = Default::default();
        let truth = out
            .iter()
            .enumerate()
            .map(|(i, p)| Truth {
                id: ids[i],
                trace: *root_of.entry(p.trace).or_insert(ids[i]),
                parent: p.parent.map(|q| ids[q]),
                kept: kept[i],
            })
            .collect();
        Generated { batches, truth }
    }
}
