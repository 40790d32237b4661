//! Provides the eBPF object to `include_bytes!`: built from `ingest-ebpf/programs` when the BPF
//! toolchain (nightly rust-src + bpf-linker) is present, else the committed prebuilt object.
//!
//! `WIRETRACE_EBPF=source` makes a missing toolchain an error (CI sets it, so the committed object
//! can never stand in for its source there); `WIRETRACE_EBPF=prebuilt` skips the source build.

use std::{
    env, fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

const PROGRAMS_CRATE: &str = "wiretrace-ebpf";
const BIN_NAME: &str = "wiretrace-ebpf";

fn main() -> anyhow::Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let root = manifest
        .parent()
        .context("ingest has a parent")?
        .to_path_buf();
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let prebuilt = root.join("ingest-ebpf/prebuilt/wiretrace.bpf.o");
    let dest = out_dir.join("wiretrace.bpf.o");
    println!("cargo:rerun-if-env-changed=WIRETRACE_EBPF");
    println!("cargo:rerun-if-changed={}", prebuilt.display());
    println!(
        "cargo:rerun-if-changed={}",
        root.join("ingest-ebpf/common/src").display()
    );

    let mode = env::var("WIRETRACE_EBPF").unwrap_or_else(|_| "auto".into());
    let toolchain = toolchain_problem();
    let from_source = match (mode.as_str(), &toolchain) {
        ("prebuilt", _) => false,
        ("source", Some(why)) => bail!("WIRETRACE_EBPF=source but {why}"),
        (_, None) => true,
        (_, Some(why)) => {
            println!("cargo:warning=using the prebuilt eBPF object: {why}");
            false
        }
    };
    if from_source {
        let programs = root.join("ingest-ebpf/programs");
        let root_dir = programs.to_str().context("utf-8 path")?;
        aya_build::build_ebpf(
            [aya_build::Package {
                name: PROGRAMS_CRATE,
                root_dir,
                ..Default::default()
            }],
            aya_build::Toolchain::default(),
        )?;
        fs::rename(out_dir.join(BIN_NAME), &dest).context("moving the built eBPF object")?;
    } else {
        fs::copy(&prebuilt, &dest)
            .with_context(|| format!("copying prebuilt eBPF object {}", prebuilt.display()))?;
    }
    Ok(())
}

/// Why the eBPF object cannot be built from source here, if it cannot.
fn toolchain_problem() -> Option<String> {
    let path = env::var_os("PATH").unwrap_or_default();
    if !env::split_paths(&path).any(|p| p.join("bpf-linker").is_file()) {
        return Some("bpf-linker is not on PATH (scripts/setup.sh installs it)".into());
    }
    let sysroot = Command::new("rustup")
        .args(["run", "nightly", "rustc", "--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    match sysroot {
        None => Some("the nightly toolchain is missing".into()),
        Some(s)
            if !Path::new(&s)
                .join("lib/rustlib/src/rust/library/core")
                .is_dir() =>
        {
            Some("nightly has no rust-src component".into())
        }
        Some(_) => None,
    }
}
