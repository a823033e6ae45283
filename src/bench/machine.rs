//! The machine a report was measured on: CPU model, cores, caches (from `/proc/cpuinfo` and
//! `/sys/devices/system/cpu/cpu0/cache`; "unknown" or an empty list where they do not exist),
//! the vector path each hand-written kernel takes on this CPU, and what the binary was built
//! from (version, git commit and rustc, recorded by `build.rs`).

use crate::kernels::isa::{self, Isa};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What "not found" reads as in a report.
pub const UNKNOWN: &str = "unknown";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// `model name` from /proc/cpuinfo, or "unknown".
    pub cpu_model: String,
    /// Logical CPUs the process may use (`std::thread::available_parallelism`).
    pub logical_cpus: usize,
    /// Threads of the pool the report ran in (`--threads`): the N of "1..N threads".
    pub threads: usize,
    /// cpu0's caches, smallest level first; empty where sysfs does not list them.
    pub caches: Vec<Cache>,
    pub kernel_paths: Vec<KernelPath>,
    pub advmnist_version: String,
    pub git_commit: String,
    pub rustc: String,
    pub os: String,
    pub arch: String,
    /// The 1-minute load average when the report started (/proc/loadavg), if known: above 0
    /// the machine was running something else too.
    pub load_average: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cache {
    pub level: u32,
    /// "Data", "Instruction" or "Unified", as sysfs names them.
    pub kind: String,
    pub size_bytes: Option<u64>,
    /// How many logical CPUs share this cache (from `shared_cpu_list`), if known.
    pub shared_by_cpus: Option<usize>,
}

/// Which code path a kernel that chooses at run time takes on this CPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KernelPath {
    pub kernel: String,
    /// Where the choice is made.
    pub source: String,
    pub path: String,
}

impl Machine {
    /// Reads this machine's description; `threads` is the pool the measurements run on.
    pub fn detect(threads: usize) -> Machine {
        Machine {
            cpu_model: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|text| cpu_model(&text))
                .unwrap_or_else(|| UNKNOWN.into()),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            threads,
            caches: caches(Path::new("/sys/devices/system/cpu/cpu0/cache")),
            kernel_paths: kernel_paths(),
            advmnist_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: env!("ADVMNIST_GIT_COMMIT").into(),
            rustc: env!("ADVMNIST_RUSTC_VERSION").into(),
            os: std::env::consts::OS.into(),
            arch: std::env::consts::ARCH.into(),
            load_average: std::fs::read_to_string("/proc/loadavg")
                .ok()
                .and_then(|s| s.split_whitespace().next()?.parse().ok()),
        }
    }

    /// "L1d 32 KiB, L1i 32 KiB, L2 512 KiB, L3 32 MiB (shared by 2)", or "unknown".
    pub fn describe_caches(&self) -> String {
        if self.caches.is_empty() {
            return UNKNOWN.into();
        }
        let described: Vec<String> = self
            .caches
            .iter()
            .map(|c| {
                let suffix = match c.kind.as_str() {
                    "Data" => "d",
                    "Instruction" => "i",
                    _ => "",
                };
                let size = c.size_bytes.map_or(UNKNOWN.to_string(), |b| {
                    if b >= 1 << 20 && b % (1 << 20) == 0 {
                        format!("{} MiB", b >> 20)
                    } else {
                        format!("{} KiB", b >> 10)
                    }
                });
                let shared = match c.shared_by_cpus {
                    Some(n) if n > 1 => format!(" (shared by {n})"),
                    _ => String::new(),
                };
                format!("L{}{suffix} {size}{shared}", c.level)
            })
            .collect();
        described.join(", ")
    }

    /// The largest cache's size in bytes, if any is known.
    pub fn largest_cache_bytes(&self) -> Option<u64> {
        self.caches.iter().filter_map(|c| c.size_bytes).max()
    }
}

/// The first `model name` (x86) or `Model`/`Processor` line of /proc/cpuinfo's text.
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "Processor", "cpu model"]
        .iter()
        .find_map(|key| {
            cpuinfo.lines().find_map(|line| {
                let (k, v) = line.split_once(':')?;
                (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
            })
        })
}

/// sysfs' cache size notation: "32K", "1024K", "16M", "512" (bytes).
pub fn parse_cache_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, scale) = match t.chars().last()? {
        'K' | 'k' => (&t[..t.len() - 1], 1 << 10),
        'M' | 'm' => (&t[..t.len() - 1], 1 << 20),
        'G' | 'g' => (&t[..t.len() - 1], 1 << 30),
        _ => (t, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * scale)
}

/// CPUs in a sysfs list such as "0-1,4,6-7".
pub fn count_cpu_list(text: &str) -> Option<usize> {
    let mut count = 0;
    for part in text.trim().split(',').filter(|p| !p.is_empty()) {
        count += match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()? + 1 - a.parse::<usize>().ok()?,
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
    }
    (count > 0).then_some(count)
}

/// Every `indexN` folder under `dir` (sysfs' cpu0/cache), smallest level first.
fn caches(dir: &Path) -> Vec<Cache> {
    let read = |index: &Path, name: &str| std::fs::read_to_string(index.join(name)).ok();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found: Vec<Cache> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("index"))
        .filter_map(|e| {
            let index = e.path();
            Some(Cache {
                level: read(&index, "level")?.trim().parse().ok()?,
                kind: read(&index, "type").map_or(UNKNOWN.into(), |s| s.trim().to_string()),
                size_bytes: read(&index, "size").and_then(|s| parse_cache_size(&s)),
                shared_by_cpus: read(&index, "shared_cpu_list").and_then(|s| count_cpu_list(&s)),
            })
        })
        .collect();
    found.sort_by(|a, b| (a.level, &a.kind).cmp(&(b.level, &b.kind)));
    found
}

/// Files under `src/` whose kernels choose a path at run time (through `isa::selected()`),
/// each described by [`kernel_paths`]. A test keeps this list complete.
pub const RUN_TIME_DISPATCH: [&str; 7] = [
    "src/kernels/conv_fma.rs",
    "src/kernels/conv_igrad.rs",
    "src/kernels/conv_wgrad.rs",
    "src/kernels/dense_fma.rs",
    "src/kernels/direct.rs",
    "src/kernels/logistic.rs",
    "src/kernels/window_sums.rs",
];

/// The path each kernel that chooses at run time takes in this process (at the level
/// `kernels::isa::selected` gives: the CPU's widest, or what `ADVMNIST_KERNELS` forces), and
/// `matrixmultiply`'s sgemm kernel, which chooses for itself from the CPU alone. Where a
/// kernel's choice is a function of its own (`conv_fma::chosen`), it is asked; the others
/// mirror the conditions written at each `source`, repeated here so that reporting them
/// changes no kernel.
pub fn kernel_paths() -> Vec<KernelPath> {
    let level = isa::selected();
    let has = |feature: &str| -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match feature {
                "avx512f" => std::is_x86_feature_detected!("avx512f"),
                "avx2" => std::is_x86_feature_detected!("avx2"),
                "fma" => std::is_x86_feature_detected!("fma"),
                "avx" => std::is_x86_feature_detected!("avx"),
                _ => false,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = feature;
            false
        }
    };
    let baseline = if cfg!(target_arch = "x86_64") {
        "baseline (x86-64 SSE2)"
    } else {
        "baseline (portable)"
    };
    let direct = match level {
        Isa::Avx512 => "AVX-512F",
        Isa::Avx2 => "AVX2",
        Isa::Generic => baseline,
    };
    let window_sums = if level >= Isa::Avx2 { "AVX2" } else { baseline };
    // A kernel that keeps `matrixmultiply`'s FMA bits: taken (`chosen`) at AVX2 and above, its
    // widest path at the level, else the GEMM path `instead`.
    let fma_kernel = |chosen: bool, instead: &str| -> String {
        match (chosen, level) {
            (false, _) => format!("not taken at level {level}: {instead}"),
            (true, Isa::Avx512) => "AVX-512F".into(),
            (true, _) => "AVX2 + FMA".into(),
        }
    };
    // matrixmultiply 0.3.11 (`sgemm_kernel::detect`): AVX-512F when compiled in (its default
    // `avx512` feature, with rustc 1.89 or later), else FMA + AVX2, else AVX, else SSE2.
    let avx512_compiled = rustc_at_least(env!("ADVMNIST_RUSTC_VERSION"), 1, 89);
    let sgemm = if has("avx512f") && avx512_compiled {
        "AVX-512F".to_string()
    } else if has("fma") && has("avx2") {
        "FMA + AVX2".to_string()
    } else if has("avx") {
        "AVX".to_string()
    } else if cfg!(target_arch = "aarch64") {
        "NEON".to_string()
    } else {
        baseline.to_string()
    };
    let mut paths = vec![
        KernelPath {
            kernel: "conv1 forward, direct convolution".into(),
            source: "src/kernels/direct.rs (conv_image)".into(),
            path: direct.into(),
        },
        KernelPath {
            kernel: "conv2 forward, direct convolution with the GEMM's bits".into(),
            source: "src/kernels/conv_fma.rs (chosen)".into(),
            // Asked of the kernel's own tests of the CPU, rather than mirrored here.
            path: fma_kernel(crate::kernels::conv_fma::chosen(), "im2col + sgemm"),
        },
        KernelPath {
            kernel: "conv2 weight gradient, direct with the GEMM's bits".into(),
            source: "src/kernels/conv_wgrad.rs (chosen)".into(),
            path: fma_kernel(crate::kernels::conv_wgrad::chosen(), "im2col + sgemm"),
        },
        KernelPath {
            kernel: "conv2 input gradient, direct with the GEMM + col2im path's bits".into(),
            source: "src/kernels/conv_igrad.rs (chosen)".into(),
            path: if crate::kernels::conv_igrad::chosen() {
                "AVX-512F".into()
            } else {
                format!("not taken at level {level}: sgemm + col2im")
            },
        },
        KernelPath {
            kernel: "dense layers' products (forward, weight and input gradients), the GEMM's bits without packing".into(),
            source: "src/kernels/dense_fma.rs (chosen)".into(),
            path: fma_kernel(crate::kernels::dense_fma::chosen(), "sgemm"),
        },
        KernelPath {
            kernel: "conv1 weight gradient through pool1, window sums".into(),
            source: "src/kernels/window_sums.rs (window_sums_5)".into(),
            path: window_sums.into(),
        },
        KernelPath {
            kernel: "logistic units (autoencoder)".into(),
            source: "src/kernels/logistic.rs (logistic)".into(),
            path: direct.into(),
        },
        KernelPath {
            kernel: "sgemm (matrixmultiply)".into(),
            source: "matrixmultiply's sgemm_kernel::detect".into(),
            path: sgemm,
        },
    ];
    if cfg!(target_feature = "avx2") {
        for p in &mut paths {
            p.path
                .push_str(" (the whole crate was compiled with AVX2 enabled)");
        }
    }
    paths
}

/// Whether a `rustc X.Y.Z ...` line names version `major.minor` or later; false if unparsable.
pub fn rustc_at_least(version_line: &str, major: u32, minor: u32) -> bool {
    let Some(version) = version_line.split_whitespace().nth(1) else {
        return false;
    };
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_from_x86_and_arm_cpuinfo() {
        let x86 =
            "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nflags\t: fpu\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("AMD EPYC"));
        let arm =
            "processor\t: 0\nBogoMIPS\t: 48.00\n\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n";
        assert_eq!(
            cpu_model(arm).as_deref(),
            Some("Raspberry Pi 4 Model B Rev 1.4")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn cache_sizes_and_cpu_lists_as_sysfs_writes_them() {
        assert_eq!(parse_cache_size("32K\n"), Some(32 << 10));
        assert_eq!(parse_cache_size("32768K"), Some(32 << 20));
        assert_eq!(parse_cache_size("2M"), Some(2 << 20));
        assert_eq!(parse_cache_size("64"), Some(64));
        assert_eq!(parse_cache_size("big"), None);
        assert_eq!(count_cpu_list("0-1\n"), Some(2));
        assert_eq!(count_cpu_list("0,2-3,8"), Some(4));
        assert_eq!(count_cpu_list("x"), None);
    }

    #[test]
    fn missing_cache_folder_gives_no_caches_and_reads_unknown() {
        let mut m = Machine::detect(1);
        m.caches = caches(Path::new("/nonexistent/advmnist/cache"));
        assert!(m.caches.is_empty());
        assert_eq!(m.describe_caches(), UNKNOWN);
    }

    #[test]
    fn rustc_versions_compare_by_major_and_minor() {
        assert!(rustc_at_least("rustc 1.95.0 (59807616e 2026-04-14)", 1, 89));
        assert!(rustc_at_least("rustc 1.89.0-nightly", 1, 89));
        assert!(!rustc_at_least("rustc 1.88.1", 1, 89));
        assert!(!rustc_at_least(UNKNOWN, 1, 89));
    }

    /// Every file under `src/` that chooses a code path at run time must be in
    /// [`RUN_TIME_DISPATCH`] (and so described by [`kernel_paths`]), and no listed file may
    /// have lost its choice: otherwise the report would name a path no kernel takes.
    #[test]
    fn every_run_time_dispatch_in_src_is_reported() {
        fn walk(dir: &Path, found: &mut Vec<String>, asks_cpu: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).expect("src/ is readable") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    walk(&path, found, asks_cpu);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).expect("readable source");
                    // Code before the tests module: a test's own feature checks do not count.
                    let code = text.split("#[cfg(test)]").next().unwrap_or("");
                    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
                    let relative = path.strip_prefix(root).expect("under the crate");
                    let relative = relative.to_string_lossy().into_owned();
                    if code.contains(concat!("isa::", "selected()")) {
                        found.push(relative.clone());
                    }
                    if code.contains(concat!("is_x86_feature", "_detected!")) {
                        asks_cpu.push(relative);
                    }
                }
            }
        }
        let (mut found, mut asks_cpu) = (Vec::new(), Vec::new());
        walk(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
            &mut asks_cpu,
        );
        // The kernels ask the CPU in one place, the switch (`kernels::isa`); this file asks
        // it again only to name `matrixmultiply`'s own choice.
        asks_cpu.sort();
        assert_eq!(asks_cpu, ["src/bench/machine.rs", "src/kernels/isa.rs"]);
        // This file reports the choices; `bench/limits.rs`'s FMA-throughput loop measures the
        // level itself (the report names the level in the figure's `what`).
        found.retain(|f| f != "src/bench/machine.rs" && f != "src/bench/limits.rs");

        found.sort();
        assert_eq!(found, RUN_TIME_DISPATCH.to_vec());
        for file in RUN_TIME_DISPATCH {
            assert!(
                kernel_paths().iter().any(|p| p.source.starts_with(file)),
                "{file} has no entry in kernel_paths()"
            );
        }
    }
}
