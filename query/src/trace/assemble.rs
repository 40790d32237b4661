//! The rule set that turns spans into trees (ARCHITECTURE.md, "Trace assembly"): spans of one
//! hop (network span sets, joined by TCP sequence numbers) are chained in path order; a server
//! process span adopts the client calls its thread made (syscall trace ids), or that carry its
//! request's X-Request-ID / trace id; set roots left over attach through X-Request-ID or span
//! ids. Every parent link is checked against cycles before it is made.

use std::convert::Infallible;

use super::meta::{CONFLICT_FIELDS, Kind, Point, SpanMeta};

/// Time tolerances of the relation checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tolerance {
    /// Allowed timestamp difference between two spans of one hop on the same agent, µs.
    pub network_delay_us: i64,
    /// Extra difference allowed between two agents' clocks, µs.
    pub host_clock_offset_us: i64,
}

impl Default for Tolerance {
    fn default() -> Self {
        Self {
            network_delay_us: 50_000,
            host_clock_offset_us: 10_000,
        }
    }
}

impl Tolerance {
    /// The most two views of one hop may differ in time, µs (across agents).
    pub fn widest(&self) -> i64 {
        self.network_delay_us + self.host_clock_offset_us
    }

    fn between(&self, a: &Hot, b: &Hot) -> i64 {
        if a.agent == b.agent {
            self.network_delay_us
        } else {
            self.widest()
        }
    }

    /// Whether `a` and `b` are the same exchange seen at two points (the strong tcp_seq test),
    /// conflicts aside.
    fn same_hop(&self, a: &Hot, b: &Hot) -> bool {
        let dev = self.between(a, b);
        let close_start = (a.start - b.start).abs() <= dev;
        let close_end = (a.end - b.end).abs() <= dev;
        let req = a.req_seq != 0 && a.req_seq == b.req_seq;
        let resp = a.resp_seq != 0 && a.resp_seq == b.resp_seq;
        if a.kind.has_request()
            && a.kind.has_response()
            && b.kind.has_request()
            && b.kind.has_response()
        {
            req && resp && close_start && close_end
        } else if a.kind.has_request() && b.kind.has_request() {
            req && close_start
        } else if a.kind.has_response() && b.kind.has_response() {
            resp && close_end
        } else {
            false
        }
    }
}

/// Bytes per span that [`assemble`] holds while it runs: its packed rows ([`Hot`], [`Links`])
/// and, about, its indexes, union-finds and output.
pub(crate) const ASSEMBLY_BYTES_PER_SPAN: usize =
    std::mem::size_of::<Hot>() + std::mem::size_of::<Links>() + 112;

/// What the rules read of every span, gathered in one pass: they visit spans in key order, and
/// a visit to this 48-byte row costs one or two cache lines where a whole [`SpanMeta`] costs up
/// to four.
#[derive(Debug, Clone, Copy)]
struct Hot {
    id: i64,
    start: i64,
    end: i64,
    /// Hash of the conflict fields that are set.
    digest: u64,
    agent: i32,
    req_seq: u32,
    resp_seq: u32,
    /// Which conflict fields are set, a bit each.
    set: u16,
    point: Point,
    kind: Kind,
}

// `Hot::set` has a bit for each conflict field.
const _: () = assert!(CONFLICT_FIELDS <= u16::BITS as usize);

impl Hot {
    fn new(s: &SpanMeta) -> Self {
        let (mut set, mut digest) = (0u16, 0u64);
        for (f, &h) in s.fields.iter().enumerate() {
            if h != 0 {
                set |= 1 << f;
                digest = mix(digest, h);
            }
        }
        Self {
            id: s.id,
            start: s.start,
            end: s.end,
            digest,
            agent: s.agent,
            req_seq: s.req_seq,
            resp_seq: s.resp_seq,
            set,
            point: s.point,
            kind: s.kind,
        }
    }

    fn duration(&self) -> i64 {
        self.end - self.start
    }
}

/// What call adoption, root attachment and trace joining read of a span besides its [`Hot`]
/// row: syscall trace ids, header hashes, process and agent.
#[derive(Debug, Clone, Copy)]
struct Links {
    sys_req: i64,
    sys_resp: i64,
    x0: u64,
    x1: u64,
    trace_id: u64,
    span_id: u64,
    parent_span_id: u64,
    pid: i64,
    agent: i32,
}

impl Links {
    fn new(s: &SpanMeta) -> Self {
        Self {
            sys_req: s.sys_req,
            sys_resp: s.sys_resp,
            x0: s.x0,
            x1: s.x1,
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            pid: s.pid,
            agent: s.agent,
        }
    }
}

/// Whether spans `a` and `b` disagree on a conflict field both carry: where both carry the same
/// fields, their digests tell; otherwise the fields are compared one by one.
fn conflict(spans: &[&SpanMeta], hot: &[Hot], a: u32, b: u32) -> bool {
    let (ha, hb) = (&hot[a as usize], &hot[b as usize]);
    if ha.set == hb.set {
        ha.digest != hb.digest
    } else {
        spans[a as usize].conflicts(spans[b as usize])
    }
}

/// Whether `outer` encloses `inner` in time, both seen by one agent (one clock): across
/// agents, clock skew makes enclosure meaningless.
fn covers(outer: &Hot, inner: &Hot) -> bool {
    outer.agent == inner.agent && outer.start <= inner.start && inner.end <= outer.end
}

/// Traces over a set of spans: for each span (by index) its trace, parent, depth and order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Assembly {
    /// Per span: `_id` of the trace's first root.
    pub trace_uid: Vec<i64>,
    /// Per span: index of its parent.
    pub parent: Vec<Option<u32>>,
    /// Per span: distance from its root.
    pub depth: Vec<u32>,
    /// Per span: position in its trace, depth first from the roots by start time.
    pub order: Vec<u32>,
    /// Span indexes trace by trace (traces by their first root's start), each depth first.
    pub sequence: Vec<u32>,
}

/// Spans by key: `(key, span)` pairs sorted, so the spans sharing a key form one run, in span
/// order.
struct ByKey<K>(Vec<(K, u32)>);

impl<K: Ord + Copy> ByKey<K> {
    fn new(mut pairs: Vec<(K, u32)>) -> Self {
        pairs.sort_unstable();
        Self(pairs)
    }

    /// The spans holding `key`, in span order.
    fn get(&self, key: K) -> impl Iterator<Item = u32> + '_ {
        let first = self.0.partition_point(|p| p.0 < key);
        self.0[first..]
            .iter()
            .take_while(move |p| p.0 == key)
            .map(|p| p.1)
    }

    /// The runs of pairs sharing a key.
    fn runs(&self) -> impl Iterator<Item = &[(K, u32)]> {
        self.0.chunk_by(|a, b| a.0 == b.0)
    }
}

/// Mixes two numbers into a 64-bit hash whose top bits are evenly spread.
fn mix(a: u64, b: u64) -> u64 {
    let h = (a.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ b).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^ (h >> 29)
}

/// Spans by the hash of a key, for lookups: each entry is a hash with the span in its low
/// bits, entries bucketed by their top bits (about one key per bucket) and each bucket sorted,
/// so a lookup reads one small bucket instead of binary-searching the whole set. Different
/// keys may share a hash: callers check the span holds the key.
struct ByHash {
    entries: Vec<u64>,
    /// Bucket `b` is `entries[starts[b]..starts[b + 1]]`.
    starts: Vec<u32>,
    bucket_bits: u32,
    span_bits: u32,
}

impl ByHash {
    /// An index of `(hash, span)` pairs over `spans` spans.
    fn new(spans: usize, pairs: &[(u64, u32)]) -> Self {
        let span_bits = u64::BITS - (spans as u64).leading_zeros();
        let bucket_bits = (u64::BITS - (pairs.len() as u64).leading_zeros()).clamp(1, 24);
        let mask = (1u64 << span_bits) - 1;
        let bucket = |e: u64| (e >> (u64::BITS - bucket_bits)) as usize;
        let mut starts = vec![0u32; (1 << bucket_bits) + 1];
        for &(h, _) in pairs {
            starts[bucket(h) + 1] += 1;
        }
        for b in 1..starts.len() {
            starts[b] += starts[b - 1];
        }
        let mut next = starts.clone();
        let mut entries = vec![0u64; pairs.len()];
        for &(h, span) in pairs {
            let b = bucket(h);
            entries[next[b] as usize] = h & !mask | u64::from(span);
            next[b] += 1;
        }
        for b in starts.windows(2) {
            entries[b[0] as usize..b[1] as usize].sort_unstable();
        }
        Self {
            entries,
            starts,
            bucket_bits,
            span_bits,
        }
    }

    /// The spans whose key may hash to `hash`, in span order.
    fn get(&self, hash: u64) -> impl Iterator<Item = u32> + '_ {
        let mask = (1u64 << self.span_bits) - 1;
        let b = (hash >> (u64::BITS - self.bucket_bits)) as usize;
        let bucket = &self.entries[self.starts[b] as usize..self.starts[b + 1] as usize];
        bucket
            .iter()
            .filter(move |&&e| e & !mask == hash & !mask)
            .map(move |&e| (e & mask) as u32)
    }
}

/// Lists of span indexes numbered `0..n`, stored flat: list `k` is `flat[at[k]..at[k + 1]]`.
struct Lists {
    at: Vec<u32>,
    flat: Vec<u32>,
}

impl Lists {
    /// Span `i` goes to list `of[i]` (none if `None`), spans in index order within a list.
    fn new(n: usize, of: impl Iterator<Item = Option<u32>> + Clone) -> Self {
        let mut at = vec![0u32; n + 1];
        for k in of.clone().flatten() {
            at[k as usize + 1] += 1;
        }
        for k in 0..n {
            at[k + 1] += at[k];
        }
        let mut fill = at.clone();
        let mut flat = vec![0u32; at[n] as usize];
        for (i, k) in of.enumerate() {
            if let Some(k) = k {
                flat[fill[k as usize] as usize] = i as u32;
                fill[k as usize] += 1;
            }
        }
        Self { at, flat }
    }

    fn range(&self, k: usize) -> std::ops::Range<usize> {
        self.at[k] as usize..self.at[k + 1] as usize
    }
}

/// A union-find over span indexes; a set's root is its least index.
struct Sets {
    up: Vec<u32>,
}

impl Sets {
    fn new(n: usize) -> Self {
        Self {
            up: (0..n as u32).collect(),
        }
    }

    fn find(&mut self, mut x: u32) -> u32 {
        while self.up[x as usize] != x {
            let next = self.up[x as usize];
            self.up[x as usize] = self.up[next as usize];
            x = next;
        }
        x
    }

    fn union(&mut self, a: u32, b: u32) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            let (lo, hi) = if a < b { (a, b) } else { (b, a) };
            self.up[hi as usize] = lo;
        }
    }
}

/// Assembles `spans` into traces.
pub fn assemble(spans: &[&SpanMeta], tol: &Tolerance) -> Assembly {
    match assemble_until(spans, tol, &|| Ok::<(), Infallible>(())) {
        Ok(a) => a,
        Err(never) => match never {},
    }
}

/// [`assemble`], asking `go_on` before each of its steps (network sets, call adoption, root
/// attachment, ordering), which may stop it with an error.
pub fn assemble_until<E>(
    spans: &[&SpanMeta],
    tol: &Tolerance,
    go_on: &dyn Fn() -> Result<(), E>,
) -> Result<Assembly, E> {
    let mut parent: Vec<Option<u32>> = vec![None; spans.len()];
    go_on()?;
    let (hot, links): (Vec<Hot>, Vec<Links>) =
        spans.iter().map(|s| (Hot::new(s), Links::new(s))).unzip();
    let (hop_of, leaves) = network_sets(spans, &hot, tol, &mut parent);
    go_on()?;
    adopt_calls(&hot, &links, &hop_of, &mut parent);
    go_on()?;
    attach_roots(&hot, &links, &hop_of, &leaves, &mut parent);
    go_on()?;
    Ok(order(&hot, &links, &parent))
}

/// Network span sets: spans joined by the strong tcp_seq relation, each chained in path order
/// (each span's parent the one before it). Returns each span's set (numbered by its least
/// span) and each set's last span.
fn network_sets(
    spans: &[&SpanMeta],
    hot: &[Hot],
    tol: &Tolerance,
    parent: &mut [Option<u32>],
) -> (Vec<u32>, Vec<u32>) {
    let n = spans.len();
    let mut sets = Sets::new(n);
    let (mut by_req, mut by_resp) = (Vec::new(), Vec::new());
    for (i, s) in hot.iter().enumerate() {
        let i = i as u32;
        if s.req_seq != 0 && s.kind.has_request() {
            by_req.push((s.req_seq, i));
        } else if s.resp_seq != 0 && s.kind.has_response() {
            by_resp.push((s.resp_seq, i));
        }
    }
    // A request-bearing span joins the response-only spans with its response seq (few: most
    // spans carry both halves, so only seqs some response-only span holds are kept).
    let mut answered: Vec<u32> = by_resp.iter().map(|p| p.0).collect();
    answered.sort_unstable();
    answered.dedup();
    for (i, s) in hot.iter().enumerate() {
        if s.resp_seq != 0 && s.kind.has_request() && answered.binary_search(&s.resp_seq).is_ok() {
            by_resp.push((s.resp_seq, i as u32));
        }
    }
    let (by_req, by_resp) = (ByKey::new(by_req), ByKey::new(by_resp));
    for run in by_req.runs().chain(by_resp.runs()) {
        for (k, &(_, a)) in run.iter().enumerate() {
            for &(_, b) in &run[k + 1..] {
                if tol.same_hop(&hot[a as usize], &hot[b as usize]) && !conflict(spans, hot, a, b) {
                    sets.union(a, b);
                }
            }
        }
    }
    let hop_of: Vec<u32> = (0..n as u32).map(|i| sets.find(i)).collect();
    let mut hops = Lists::new(n, hop_of.iter().map(|&h| Some(h)));
    let mut leaves = Vec::new();
    for h in 0..n {
        let range = hops.range(h);
        if range.is_empty() {
            continue;
        }
        let hop = &mut hops.flat[range];
        sort_hop(hot, hop);
        for w in hop.windows(2) {
            parent[w[1] as usize] = Some(w[0]);
        }
        leaves.push(hop[hop.len() - 1]);
    }
    (hop_of, leaves)
}

/// Orders one hop: client process, then the network points by side, agent and point, outer
/// (longer) views first, then the server process.
fn sort_hop(hot: &[Hot], hop: &mut [u32]) {
    if hop.len() < 2 {
        return;
    }
    let first = |pred: fn(Point) -> bool| {
        hop.iter()
            .map(|&i| &hot[i as usize])
            .filter(|s| pred(s.point))
            .min_by_key(|s| s.point)
            .map(|s| s.agent)
    };
    let ingress = first(Point::is_client_side);
    let egress = hop
        .iter()
        .map(|&i| &hot[i as usize])
        .filter(|s| s.point > Point::Between)
        .max_by_key(|s| s.point)
        .map(|s| s.agent);
    let agent_rank = |s: &Hot| match (Some(s.agent) == ingress, Some(s.agent) == egress) {
        (true, _) => 0,
        (false, true) => 2,
        (false, false) => 1,
    };
    hop.sort_by_key(|&i| {
        let s = &hot[i as usize];
        let class = match s.point {
            Point::ClientProcess => 0,
            Point::ServerProcess => 2,
            _ => 1,
        };
        (class, agent_rank(s), s.point, -s.duration(), s.start, s.id)
    });
}

/// Whether making `p` the parent of root `c` keeps the forest acyclic.
fn acyclic(parent: &[Option<u32>], c: u32, p: u32) -> bool {
    let mut x = Some(p);
    while let Some(i) = x {
        if i == c {
            return false;
        }
        x = parent[i as usize];
    }
    true
}

/// Process span sets: each server process span adopts the client calls of the same process
/// that it encloses in time and that its thread's syscall trace ids chain to it, or that carry
/// its X-Request-ID or trace id. Where several qualify, a shared header beats the chain, then the
/// latest-starting server span wins.
fn adopt_calls(hot: &[Hot], links: &[Links], hop_of: &[u32], parent: &mut [Option<u32>]) {
    // Client process spans that start their hop, by (agent, id) and by (agent, pid, tag, hash).
    let sys_key = |agent: i32, id: i64| mix(agent as u64, id as u64);
    let tag_key = |agent: i32, pid: i64, tag: u8, h: u64| {
        mix(mix(agent as u64, pid as u64), h ^ u64::from(tag))
    };
    let (mut by_sys_req, mut by_sys_resp, mut by_tag) = (Vec::new(), Vec::new(), Vec::new());
    for (i, h) in hot.iter().enumerate() {
        if h.point != Point::ClientProcess || parent[i].is_some() {
            continue;
        }
        let s = links[i];
        let i = i as u32;
        if s.sys_req != 0 {
            by_sys_req.push((sys_key(s.agent, s.sys_req), i));
        }
        if s.sys_resp != 0 {
            by_sys_resp.push((sys_key(s.agent, s.sys_resp), i));
        }
        for (tag, h) in [(0u8, s.x0), (1, s.x1), (2, s.trace_id)] {
            if h != 0 {
                by_tag.push((tag_key(s.agent, s.pid, tag, h), i));
            }
        }
    }
    let n = links.len();
    let (by_sys_req, by_tag) = (ByHash::new(n, &by_sys_req), ByHash::new(n, &by_tag));
    // Built only when a backward walk needs it.
    let by_sys_resp_index = std::cell::OnceCell::new();
    // What a call holds under each tag (a shared hash is checked against it).
    let tagged = |c: &Links, tag: u8| match tag {
        0 => c.x0,
        1 => c.x1,
        _ => c.trace_id,
    };
    // Per call, the best claim so far: (shares a header with the server span, its start, its
    // index). A shared X-Request-ID or trace id outranks the syscall chain, which an event-loop
    // proxy interleaving requests on one thread can make cross from one request to another.
    let mut best: Vec<Option<(bool, i64, u32)>> = vec![None; links.len()];
    let offer = |c: u32, sp: u32, by_header: bool, best: &mut [Option<(bool, i64, u32)>]| {
        let (cs, ss) = (&links[c as usize], &links[sp as usize]);
        if hop_of[c as usize] == hop_of[sp as usize]
            || !covers(&hot[sp as usize], &hot[c as usize])
            || cs.pid != ss.pid
        {
            return false;
        }
        let claim = Some((by_header, hot[sp as usize].start, sp));
        best[c as usize] = best[c as usize].max(claim);
        true
    };
    for (sp, h) in hot.iter().enumerate() {
        if h.point != Point::ServerProcess {
            continue;
        }
        let s = links[sp];
        let sp = sp as u32;
        // The thread's chain: request id → first call → … → last call → response id.
        if s.sys_req != 0 && s.sys_resp != 0 && s.sys_req != s.sys_resp {
            // Forward from the request id; backward from the response id only where the forward
            // walk stopped short of it (a call missing from the window).
            let mut whole = false;
            for (start, forward) in [(s.sys_req, true), (s.sys_resp, false)] {
                if whole {
                    break;
                }
                let mut id = start;
                let index = if forward {
                    &by_sys_req
                } else {
                    by_sys_resp_index.get_or_init(|| ByHash::new(n, &by_sys_resp))
                };
                for _ in 0..links.len() {
                    let holds = |c: u32| {
                        let cs = &links[c as usize];
                        cs.agent == s.agent && id == if forward { cs.sys_req } else { cs.sys_resp }
                    };
                    let next = index
                        .get(sys_key(s.agent, id))
                        .find(|&c| holds(c) && offer(c, sp, false, &mut best));
                    let Some(c) = next else { break };
                    let cs = &links[c as usize];
                    id = if forward { cs.sys_resp } else { cs.sys_req };
                    if id == 0 || id == if forward { s.sys_resp } else { s.sys_req } {
                        whole = id != 0;
                        break;
                    }
                }
            }
        }
        // Headers passed through or injected: same-side X-Request-ID, the response's id on
        // the call, a shared trace id.
        for (tag, h) in [(0, s.x0), (0, s.x1), (1, s.x1), (2, s.trace_id)] {
            if h != 0 {
                for c in by_tag.get(tag_key(s.agent, s.pid, tag, h)) {
                    if tagged(&links[c as usize], tag) == h {
                        offer(c, sp, true, &mut best);
                    }
                }
            }
        }
    }
    for (c, claim) in best.into_iter().enumerate() {
        if let Some((_, _, sp)) = claim
            && parent[c].is_none()
            && acyclic(parent, c as u32, sp)
        {
            parent[c] = Some(sp);
        }
    }
}

/// Set roots still without a parent attach to the innermost enclosing hop leaf on the same
/// agent that shares an X-Request-ID with them or whose span id is their parent span id.
fn attach_roots(
    hot: &[Hot],
    links: &[Links],
    hop_of: &[u32],
    leaves: &[u32],
    parent: &mut [Option<u32>],
) {
    let mut by_key = Vec::new();
    for &l in leaves {
        let s = &links[l as usize];
        let mut keys = [s.x0, s.x1, s.span_id];
        keys.sort_unstable();
        for (k, &h) in keys.iter().enumerate() {
            if h != 0 && (k == 0 || keys[k - 1] != h) {
                by_key.push((h, l));
            }
        }
    }
    let by_key = ByKey::new(by_key);
    for c in 0..links.len() {
        if parent[c].is_some() {
            continue;
        }
        let cs = &links[c];
        let mut found: Option<u32> = None;
        for h in [cs.x0, cs.x1, cs.parent_span_id] {
            if h == 0 {
                continue;
            }
            for l in by_key.get(h) {
                let ls = &links[l as usize];
                let linked = if h == cs.parent_span_id {
                    ls.span_id == h
                } else {
                    ls.x1 == cs.x0 || ls.x0 == cs.x0 || ls.x1 == cs.x1
                };
                let (lh, ch) = (&hot[l as usize], &hot[c]);
                if !linked
                    || hop_of[l as usize] == hop_of[c]
                    || lh.duration() < ch.duration()
                    || !covers(lh, ch)
                {
                    continue;
                }
                if found.is_none_or(|f| (lh.duration(), l) < (hot[f as usize].duration(), f))
                    && acyclic(parent, c as u32, l)
                {
                    found = Some(l);
                }
            }
        }
        parent[c] = found;
    }
}

/// Trees from parent links, traces from trees joined by shared X-Request-IDs and trace ids;
/// depth-first order by start time.
fn order(hot: &[Hot], links: &[Links], parent: &[Option<u32>]) -> Assembly {
    let n = links.len();
    let mut sets = Sets::new(n);
    for (c, p) in parent.iter().enumerate() {
        if let Some(p) = p {
            sets.union(c as u32, *p);
        }
    }
    // Each shared key joins its spans to the first span holding it.
    let mut first: foldhash::HashMap<(u8, u64), u32> =
        foldhash::HashMap::with_capacity_and_hasher(n / 8, Default::default());
    for (i, s) in links.iter().enumerate() {
        for key in [(0u8, s.x0), (0, s.x1), (1, s.trace_id)] {
            if key.1 != 0 {
                let f = *first.entry(key).or_insert(i as u32);
                sets.union(f, i as u32);
            }
        }
    }
    let by_start = |&i: &u32| (hot[i as usize].start, hot[i as usize].id);
    let mut children = Lists::new(n, parent.iter().copied());
    for k in 0..n {
        let range = children.range(k);
        children.flat[range].sort_unstable_by_key(by_start);
    }
    let mut roots: Vec<u32> = (0..n as u32)
        .filter(|&i| parent[i as usize].is_none())
        .collect();
    roots.sort_unstable_by_key(by_start);
    // Roots grouped by trace (a stable sort keeps them by start), traces in order of their
    // first root.
    let mut rank = vec![u32::MAX; n];
    let mut traces = 0;
    let trace_of: Vec<u32> = roots
        .iter()
        .map(|&r| {
            let t = sets.find(r) as usize;
            if rank[t] == u32::MAX {
                rank[t] = traces;
                traces += 1;
            }
            rank[t]
        })
        .collect();
    let mut grouped: Vec<(u32, u32)> = trace_of.into_iter().zip(roots).collect();
    grouped.sort_by_key(|&(t, _)| t);
    let mut out = Assembly {
        trace_uid: vec![0; n],
        parent: parent.to_vec(),
        depth: vec![0; n],
        order: vec![0; n],
        sequence: Vec::with_capacity(n),
    };
    let mut stack: Vec<(u32, u32)> = Vec::new();
    for trace in grouped.chunk_by(|a, b| a.0 == b.0) {
        let uid = hot[trace[0].1 as usize].id;
        let mut k = 0u32;
        stack.extend(trace.iter().rev().map(|&(_, r)| (r, 0)));
        while let Some((i, d)) = stack.pop() {
            out.trace_uid[i as usize] = uid;
            out.depth[i as usize] = d;
            out.order[i as usize] = k;
            out.sequence.push(i);
            k += 1;
            let kids = &children.flat[children.range(i as usize)];
            stack.extend(kids.iter().rev().map(|&c| (c, d + 1)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::meta::SpanKeys;

    fn span(fields: [u64; CONFLICT_FIELDS]) -> SpanMeta {
        SpanMeta {
            keys: SpanKeys {
                id: 1,
                start: 10,
                end: 20,
                req_seq: 7,
                resp_seq: 8,
                sys_req: 0,
                sys_resp: 0,
                x0: 0,
                x1: 0,
                trace_id: 0,
            },
            point: Point::Between,
            kind: Kind::Session,
            agent: 1,
            pid: 0,
            span_id: 0,
            parent_span_id: 0,
            fields,
        }
    }

    #[test]
    fn conflict_by_digest_and_field_by_field_agree_with_the_fields() {
        let mut base = [0u64; CONFLICT_FIELDS];
        base[..4].copy_from_slice(&[11, 12, 13, 14]);
        let mut other_value = base;
        other_value[2] = 99;
        let mut one_unset = base;
        one_unset[3] = 0;
        let mut unset_and_other = one_unset;
        unset_and_other[1] = 98;
        let spans = [base, base, other_value, one_unset, unset_and_other].map(span);
        let refs: Vec<&SpanMeta> = spans.iter().collect();
        let hot: Vec<Hot> = refs.iter().map(|s| Hot::new(s)).collect();
        for b in 1..spans.len() as u32 {
            assert_eq!(
                conflict(&refs, &hot, 0, b),
                spans[0].conflicts(&spans[b as usize]),
                "span {b}"
            );
        }
        // Same fields set: the digests tell (equal, then one value apart).
        assert!(!conflict(&refs, &hot, 0, 1));
        assert!(conflict(&refs, &hot, 0, 2));
        // Different fields set: compared where both are set.
        assert!(!conflict(&refs, &hot, 0, 3));
        assert!(conflict(&refs, &hot, 0, 4));
    }
}
