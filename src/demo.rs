//! `wiretrace demo bookinfo`: builds the Bookinfo lab (lab/bookinfo, embedded in the binary),
//! captures it, drives a request, prints its assembled trace as a tree, and keeps serving SQL
//! (and driving a request every few seconds) until Ctrl-C; then tears the lab down.

use std::{
    collections::HashMap,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use indicatif::ProgressBar;
use wiretrace_ingest::capture::CaptureRule;
use wiretrace_query::{Access, SessionContext, output, session::QUERY_MEMORY_LIMIT};

use wiretrace_storage::StoreOptions;

use crate::live::{Live, LiveConfig};

/// The lab's files, written next to each other into the lab dir.
const LAB_FILES: [(&str, &str); 6] = [
    ("netns.sh", include_str!("../lab/netns.sh")),
    ("bookinfo.sh", include_str!("../lab/bookinfo/bookinfo.sh")),
    (
        "productpage.py",
        include_str!("../lab/bookinfo/productpage.py"),
    ),
    ("details.rb", include_str!("../lab/bookinfo/details.rb")),
    ("Reviews.java", include_str!("../lab/bookinfo/Reviews.java")),
    ("ratings.js", include_str!("../lab/bookinfo/ratings.js")),
];

/// Namespace name prefix of the demo's lab.
const PREFIX: &str = "wtdemo";

/// The lab's pods: namespace suffix and service name.
const PODS: [(&str, &str); 5] = [
    ("lg", "loadgenerator"),
    ("pp", "productpage"),
    ("de", "details"),
    ("rv", "reviews"),
    ("ra", "ratings"),
];

/// Paths a Bookinfo request touches.
const PATHS: &str = "('/productpage', '/details/0', '/reviews/0', '/ratings/0')";

/// Options of `wiretrace demo bookinfo`.
#[derive(Debug, clap::Args)]
pub(crate) struct BookinfoArgs {
    /// Leave the lab running on exit (remove it later with --down).
    #[arg(long)]
    keep: bool,
    /// Remove a lab left by --keep or an interrupted demo, and exit.
    #[arg(long, conflicts_with = "keep")]
    down: bool,
    /// Address of the Postgres wire server (loopback: the demo sets no passwords).
    #[arg(long, default_value = "127.0.0.1:5433", env = "WIRETRACE_LISTEN")]
    listen: String,
    /// Where the demo's spans are stored.
    #[arg(long, default_value = "./wiretrace-demo-data")]
    data_dir: PathBuf,
    /// Where the lab's scripts, configs and logs go.
    #[arg(long, default_value = "/tmp/wiretrace-bookinfo")]
    lab_dir: PathBuf,
    /// Seconds between the requests driven after the first (0: none).
    #[arg(long, default_value_t = 2)]
    every_s: u64,
}

/// Runs the demo.
pub(crate) async fn bookinfo(args: BookinfoArgs) -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the demo builds network namespaces and loads eBPF programs: run it as root");
    }
    write_lab(&args.lab_dir)?;
    if args.down {
        lab(&args.lab_dir, "down")?;
        println!("Bookinfo lab removed");
        return Ok(());
    }
    let spinner = ProgressBar::new_spinner().with_message(
        "starting Bookinfo: 2 nodes, 5 pods (Python, Ruby, Java, Node.js apps, nginx sidecars)",
    );
    spinner.enable_steady_tick(Duration::from_millis(120));
    lab(&args.lab_dir, "up")?;
    spinner.set_message("loading the eBPF programs and opening the packet captures");
    let live = Live::start(LiveConfig {
        data_dir: &args.data_dir,
        listen: &args.listen,
        access: Access::default(),
        query_memory: QUERY_MEMORY_LIMIT,
        store: StoreOptions::default(),
        payload_limit: 1024,
        flush_ms: 200,
        rules: vec![
            rule(&format!("node={PREFIX}n*/eth0"))?,
            rule(&format!("pod={PREFIX}n*/vp*"))?,
        ],
        snaplen: wiretrace_ingest::DEFAULT_SNAPLEN,
        ring_mib: wiretrace_ingest::DEFAULT_RING_MIB,
    })
    .await;
    let live = match live {
        Ok(l) => l,
        Err(e) => {
            spinner.finish_and_clear();
            let _ = lab(&args.lab_dir, "down");
            return Err(e);
        }
    };
    spinner.set_message("curl → productpage → details, reviews → ratings");
    let shown = show_one_request(&live.ctx, &args.lab_dir).await;
    spinner.finish_and_clear();
    match shown {
        Ok(()) => {}
        Err(e) => eprintln!("demo: {e:#}"),
    }
    println!(
        "\nSQL on {addr} — try:\n  psql -h {ip} -p {port} -c \"select trace_uid, count(*) spans, \
         max(response_duration) us from traces(now() - interval '5 minutes', now()) group by 1\"\n\
         {driving}Ctrl-C to stop{keep}.",
        addr = live.addr,
        ip = live.addr.ip(),
        port = live.addr.port(),
        driving = if args.every_s > 0 {
            format!("A request every {} s keeps data coming. ", args.every_s)
        } else {
            String::new()
        },
        keep = if args.keep {
            " (the lab stays: `wiretrace demo bookinfo --down` removes it)"
        } else {
            " and remove the lab"
        },
    );
    let signal = crate::shutdown_signal();
    tokio::pin!(signal);
    loop {
        let pause = tokio::time::sleep(Duration::from_secs(args.every_s.max(1)));
        tokio::select! {
            () = &mut signal => break,
            () = pause => {
                if args.every_s > 0 {
                    let dir = args.lab_dir.clone();
                    let _ = tokio::task::spawn_blocking(move || request(&dir)).await;
                }
            }
        }
    }
    eprintln!("demo: stopping");
    let stopped = live.stop().await;
    if !args.keep {
        lab(&args.lab_dir, "down")?;
    }
    stopped
}

/// One request, its spans awaited, its trace printed as a tree.
async fn show_one_request(ctx: &SessionContext, dir: &Path) -> Result<()> {
    // Let every capture open before the request.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let from = crate::unix_now_us();
    let d = dir.to_path_buf();
    tokio::task::spawn_blocking(move || request(&d)).await??;
    let spans = format!(
        "select _id from l7_flow_log where start_time >= to_timestamp_micros({from}) \
         and request_resource in {PATHS}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = 0;
    loop {
        let n: usize = output::run_sql(ctx, &spans)
            .await?
            .iter()
            .map(|b| b.num_rows())
            .sum();
        // Done when no span arrived for a second (38 when every hop was seen).
        if (n > 0 && n == last) || Instant::now() > deadline {
            break;
        }
        last = n;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let seed = output::first_i64(
        &output::run_sql(
            ctx,
            &format!(
                "select _id from l7_flow_log where start_time >= to_timestamp_micros({from}) \
                 and observation_point = 'c-p' and process_kname_0 = 'curl' \
                 order by start_time limit 1"
            ),
        )
        .await?,
    )
    .context("no span of curl's request was captured")?;
    let tree = output::run_sql(ctx, &tree_sql(seed)).await?;
    let rows: usize = tree.iter().map(|b| b.num_rows()).sum();
    println!("{}", output::render(&tree)?);
    let ebpf = output::first_i64(
        &output::run_sql(
            ctx,
            &format!("select count(*) from trace({seed}) where signal_source = 'ebpf'"),
        )
        .await?,
    )
    .unwrap_or(0);
    println!(
        "one request, one trace: {rows} spans ({ebpf} eBPF, {} packet), rebuilt from TCP \
         sequence numbers, thread syscall ids and the sidecars' X-Request-ID — no code change, \
         no injected trace headers.\nThe same from SQL: select * from trace({seed}) order by \
         span_order",
        rows as i64 - ebpf
    );
    Ok(())
}

/// The tree query: one row per span with its parent's row, indented by depth, processes named
/// by pod (curl exits before it could be looked up: it is the loadgenerator's).
fn tree_sql(seed: i64) -> String {
    let mut pod = String::from("case coalesce(t.process_id_0, t.process_id_1)");
    for (pid, name) in pod_of_pids() {
        pod += &format!(" when {pid} then '{name}'");
    }
    pod += " else case t.process_kname_0 when 'curl' then 'loadgenerator' else '?' end end";
    format!(
        "with t as (select * from trace({seed})) \
         select t.span_order + 1 as \"#\", p.span_order + 1 as parent, \
           t.signal_source as source, t.observation_point as point, \
           repeat(' ', t.depth) || case t.signal_source when 'packet' \
             then 'node ' || replace(replace(t.netns, '{PREFIX}', ''), 'n', '') || ' ' || t.capture_nic \
             else {pod} || ' ' || coalesce(t.process_kname_0, t.process_kname_1) end \
             as \"process or NIC\", \
           t.request_type || ' ' || t.request_resource as request, t.response_code as status, \
           round(t.response_duration / 1000.0, 2) as ms \
         from t left join t p on t.parent_id = p._id order by t.span_order"
    )
}

/// Which lab pod each process lives in, by the inode of its network namespace.
fn pod_of_pids() -> HashMap<u32, &'static str> {
    let ns_inode = |p: &Path| std::fs::metadata(p).map(|m| m.ino()).ok();
    let pods: HashMap<u64, &str> = PODS
        .iter()
        .filter_map(|(short, name)| {
            ns_inode(&Path::new("/run/netns").join(format!("{PREFIX}{short}"))).map(|i| (i, *name))
        })
        .collect();
    let mut of = HashMap::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if let Some(pod) = ns_inode(&entry.path().join("ns/net")).and_then(|i| pods.get(&i)) {
            of.insert(pid, *pod);
        }
    }
    of
}

fn rule(s: &str) -> Result<CaptureRule> {
    s.parse().map_err(anyhow::Error::msg)
}

/// Writes the embedded lab files into `dir`.
fn write_lab(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, text) in LAB_FILES {
        let path = dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        if name.ends_with(".sh") {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// Builds (`up`) or removes (`down`) the lab, its logs and pid files under `dir/run`.
fn lab(dir: &Path, action: &str) -> Result<()> {
    let run = dir.join("run");
    script(dir, &[action, PREFIX, &run.to_string_lossy()])
}

/// One request from the loadgenerator pod.
fn request(dir: &Path) -> Result<()> {
    script(dir, &["request", PREFIX])
}

/// Runs bookinfo.sh `args`; a failure names the action, its stderr and where the logs are.
fn script(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new(dir.join("bookinfo.sh"))
        .args(args)
        .output()
        .with_context(|| format!("running bookinfo.sh {}", args[0]))?;
    if !out.status.success() {
        bail!(
            "bookinfo.sh {} failed: {}(logs in {})",
            args[0],
            String::from_utf8_lossy(&out.stderr),
            dir.join("run").display()
        );
    }
    Ok(())
}
