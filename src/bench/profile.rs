//! `advmnist bench --report DIR`: what the machine can do and where advmnist's time goes.
//!
//! Measured on the spot, each figure as [`SAMPLES`] samples after a warm-up ([`super::measure`],
//! [`super::stats`]):
//! - **limits** ([`super::limits`]): `matrixmultiply`'s sgemm at LeNet's own GEMM shapes
//!   ([`lenet_gemm_shapes`], derived from the partitions in `kernels::parallel`) and at
//!   1024^3, and a streaming triad (`a = b + 3c`) for memory and last-level-cache bandwidth,
//!   on 1..N threads. On t threads, t single-threaded sgemm calls run side by side, each on
//!   its own output, as advmnist runs its products;
//! - **layers** ([`super::layers`]): every LeNet layer's forward and backward passes at
//!   `--batch`, and the SGD update, on N threads, each against its ceiling: sgemm at the shape
//!   of its own products (layers that multiply) or the triad's bandwidth, from cache when the
//!   pass's data fits in the last-level cache, else from memory (passes that only move data);
//! - **workloads**: the six whole-network workloads of `advmnist bench` on 1..N threads (the
//!   scaling curve), as a share of sgemm at 1024^3 and, for LeNet's, of sgemm at the
//!   workload's own shapes.
//!
//! The JSON keys are documented in docs/performance.md ("bench.json"), which a test compares
//! with what [`Profile`] serialises to; `format` and `version` say which layout a file has.
//! Laying the profile out as Markdown and SVG is `report::bench_page`'s job.

use super::for_each_workload;
use super::layers::layer_measurements;
use super::limits::{
    fma_peak_measurement, sgemm_measurement, triad_measurement, CACHE_TRIAD_BYTES, LARGE_SQUARE,
};
use super::machine::Machine;
use super::measure::{measure, on_threads, Measurement, Work, SAMPLES};
use super::shapes::{lenet_gemm_shapes, workload_products, GemmShape};
use super::stats::spread_warning;
use serde::{Deserialize, Serialize};

/// The `format` of every report file: what `--compare` checks first.
pub const FORMAT: &str = "advmnist-bench-report";
/// The layout's version: raised when a key changes meaning or goes away (adding keys keeps it).
pub const VERSION: u32 = 1;
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub format: String,
    pub version: u32,
    pub machine: Machine,
    pub settings: Settings,
    pub ceilings: Ceilings,
    pub figures: Vec<Measurement>,
    pub warnings: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub seconds_per_figure: f64,
    pub samples_per_figure: usize,
    pub batch: usize,
    pub max_threads: usize,
    /// When the report started, in seconds since 1970-01-01 UTC.
    pub unix_time: u64,
}

/// The machine's measured limits on N threads (medians), which the shares refer to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ceilings {
    pub sgemm_peak_gflop_per_s: f64,
    pub sgemm_peak_figure: String,
    /// The FMA-throughput peak (`limits::fma_peak_measurement`). Absent (0 and empty) from
    /// reports written before it was measured.
    #[serde(default)]
    pub fma_peak_gflop_per_s: f64,
    #[serde(default)]
    pub fma_peak_figure: String,
    /// The triad from memory (arrays twice the largest cache).
    pub bandwidth_gb_per_s: f64,
    pub bandwidth_figure: String,
    /// The triad in the last-level cache (3 arrays of [`CACHE_TRIAD_BYTES`]).
    pub cache_bandwidth_gb_per_s: f64,
    pub cache_bandwidth_figure: String,
}

/// How long to measure, and on how many threads at most.
#[derive(Clone, Copy, Debug)]
pub struct ProfileConfig {
    pub batch: usize,
    pub seconds_per_figure: f64,
    pub max_threads: usize,
}

/// Measures a whole profile (what `bench --report` writes). `progress` sees every figure as it
/// is measured.
pub fn run(
    cfg: &ProfileConfig,
    progress: &(dyn Fn(&Measurement) + Sync),
) -> Result<Profile, String> {
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = Machine::detect(cfg.max_threads);
    let seconds = cfg.seconds_per_figure;
    let mut shapes = lenet_gemm_shapes(cfg.batch);
    shapes.push(GemmShape {
        product: "square".into(),
        m: LARGE_SQUARE,
        k: LARGE_SQUARE,
        n: LARGE_SQUARE,
        count: 1.0,
    });
    let mut unique: Vec<GemmShape> = Vec::new();
    for s in shapes {
        if !unique.iter().any(|u| u.name() == s.name()) {
            unique.push(s);
        }
    }
    // Each array twice the largest cache (32 to 64 MiB), so that the triad streams from memory.
    let triad_elements = machine
        .largest_cache_bytes()
        .map_or(8 << 20, |b| (b as usize / 2).clamp(8 << 20, 16 << 20));
    let mut figures = Vec::new();
    for t in 1..=cfg.max_threads {
        figures.extend(on_threads(t, || {
            let mut done = Vec::new();
            let f = fma_peak_measurement(seconds);
            progress(&f);
            done.push(f);
            for shape in &unique {
                let f = sgemm_measurement(shape, seconds);
                progress(&f);
                done.push(f);
            }
            for (level, elements) in [("memory", triad_elements), ("cache", CACHE_TRIAD_BYTES / 4)]
            {
                let f = triad_measurement(level, elements, seconds);
                progress(&f);
                done.push(f);
            }
            done
        })?);
    }
    figures.extend(on_threads(cfg.max_threads, || {
        layer_measurements(cfg.batch, seconds, progress)
    })?);
    for t in 1..=cfg.max_threads {
        figures.extend(on_threads(t, || {
            let mut done = Vec::new();
            for_each_workload(cfg.batch, |w, step| {
                let images = w.images_per_step(cfg.batch) as f64;
                let f = measure(
                    format!("workload/{}/t{t}", w.name),
                    "workload",
                    w.what.into(),
                    Work {
                        unit: "img/s",
                        per_call: images,
                        flop: images * w.flop_per_image,
                        bytes: 0.0,
                    },
                    seconds,
                    step,
                );
                progress(&f);
                done.push(f);
            });
            done
        })?);
    }
    Ok(assemble(machine, cfg, unix_time, figures))
}

/// Fills in every figure's shares from the measured ceilings, and the warnings.
fn assemble(
    machine: Machine,
    cfg: &ProfileConfig,
    unix_time: u64,
    mut figures: Vec<Measurement>,
) -> Profile {
    let n = cfg.max_threads;
    let rate_of = |figures: &[Measurement], id: &str| {
        figures.iter().find(|f| f.id == id).map(|f| f.rate.median)
    };
    let square = format!("{LARGE_SQUARE}x{LARGE_SQUARE}x{LARGE_SQUARE}");
    let peak_id = |t: usize| format!("sgemm/{square}/t{t}");
    let fma_id = |t: usize| format!("fma/t{t}");
    let shapes = lenet_gemm_shapes(cfg.batch);
    let largest_cache = machine.largest_cache_bytes().unwrap_or(0) as f64;
    let snapshot = figures.clone();
    for f in &mut figures {
        let t = f.threads;
        if let (Some(g), Some(peak)) = (f.gflop_per_s, rate_of(&snapshot, &peak_id(t))) {
            f.share_of_peak = Some(g / peak);
        }
        if let (Some(g), Some(fma)) = (f.gflop_per_s, rate_of(&snapshot, &fma_id(t))) {
            f.share_of_fma_peak = Some(g / fma);
        }
        let ceiling: Option<(String, Option<f64>)> = match f.group.as_str() {
            "layer" | "update" => {
                let product = f.id.trim_start_matches("layer/");
                match shapes.iter().find(|s| s.product == product) {
                    Some(s) => {
                        let id = format!("sgemm/{}/t{t}", s.name());
                        Some((id.clone(), rate_of(&snapshot, &id)))
                    }
                    None => {
                        // Data that fits in the last-level cache streams at the cache's speed.
                        let level = if f.bytes_per_call <= largest_cache {
                            "cache"
                        } else {
                            "memory"
                        };
                        let id = format!("bandwidth/{level}/t{t}");
                        Some((id.clone(), rate_of(&snapshot, &id)))
                    }
                }
            }
            "workload" => {
                let name = f.id.split('/').nth(1).unwrap_or("");
                let products = workload_products(name);
                // The time the workload's products would take at bare sgemm speed.
                let mut flop = 0.0;
                let mut seconds = 0.0;
                let mut complete = !products.is_empty();
                for product in products {
                    let s = shapes.iter().find(|s| s.product == *product);
                    let rate =
                        s.and_then(|s| rate_of(&snapshot, &format!("sgemm/{}/t{t}", s.name())));
                    match (s, rate) {
                        (Some(s), Some(r)) => {
                            let per_image = s.flop() * s.count / cfg.batch as f64;
                            flop += per_image;
                            seconds += per_image / 1e9 / r;
                        }
                        _ => complete = false,
                    }
                }
                complete.then(|| {
                    (
                        format!(
                            "sgemm at the workload's own shapes on {t} threads (time-weighted)"
                        ),
                        Some(flop / 1e9 / seconds),
                    )
                })
            }
            _ => None,
        };
        if let Some((what, Some(rate))) = ceiling {
            let own = if f.unit == "GB/s" {
                f.gb_per_s
            } else {
                f.gflop_per_s
            };
            f.ceiling = Some(what);
            f.ceiling_rate = Some(rate);
            f.share_of_ceiling = own.map(|o| o / rate);
        }
    }
    let mut warnings: Vec<String> = figures
        .iter()
        .filter_map(|f| spread_warning(&f.id, &f.seconds))
        .collect();
    if let Some(load) = machine.load_average.filter(|&l| l >= 1.0) {
        warnings.insert(
            0,
            format!(
                "load average {load:.2} when the report started: other processes were running, \
                 so every figure may be low"
            ),
        );
    }
    let peak = rate_of(&figures, &peak_id(n)).unwrap_or(0.0);
    let bandwidth = rate_of(&figures, &format!("bandwidth/memory/t{n}")).unwrap_or(0.0);
    let cache_bandwidth = rate_of(&figures, &format!("bandwidth/cache/t{n}")).unwrap_or(0.0);
    Profile {
        format: FORMAT.into(),
        version: VERSION,
        machine,
        settings: Settings {
            seconds_per_figure: cfg.seconds_per_figure,
            samples_per_figure: SAMPLES,
            batch: cfg.batch,
            max_threads: n,
            unix_time,
        },
        ceilings: Ceilings {
            sgemm_peak_gflop_per_s: peak,
            sgemm_peak_figure: peak_id(n),
            fma_peak_gflop_per_s: rate_of(&figures, &fma_id(n)).unwrap_or(0.0),
            fma_peak_figure: fma_id(n),
            bandwidth_gb_per_s: bandwidth,
            bandwidth_figure: format!("bandwidth/memory/t{n}"),
            cache_bandwidth_gb_per_s: cache_bandwidth,
            cache_bandwidth_figure: format!("bandwidth/cache/t{n}"),
        },
        figures,
        warnings,
    }
}

/// Every key path of a JSON value: `a.b` for object members, `a[]` for array elements (an
/// empty array gives `a[]` itself, since its elements' keys cannot be seen).
pub fn key_paths(value: &serde_json::Value) -> std::collections::BTreeSet<String> {
    fn walk(v: &serde_json::Value, path: String, out: &mut std::collections::BTreeSet<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    walk(v, p, out);
                }
            }
            serde_json::Value::Array(items) if !items.is_empty() => {
                for item in items {
                    walk(item, format!("{path}[]"), out);
                }
            }
            serde_json::Value::Array(_) => {
                out.insert(format!("{path}[]"));
            }
            _ => {
                out.insert(path);
            }
        }
    }
    let mut out = std::collections::BTreeSet::new();
    walk(value, String::new(), &mut out);
    out
}

/// The keys documented in docs/performance.md: the first column (in backticks) of the table
/// between `<!-- bench.json keys -->` and `<!-- end bench.json keys -->`.
pub fn documented_keys(markdown: &str) -> Vec<String> {
    let Some((_, rest)) = markdown.split_once("<!-- bench.json keys -->") else {
        return Vec::new();
    };
    let table = rest
        .split_once("<!-- end bench.json keys -->")
        .map_or(rest, |(t, _)| t);
    table
        .lines()
        .filter_map(|line| {
            let cell = line.trim().strip_prefix('|')?.split('|').next()?.trim();
            let key = cell.strip_prefix('`')?.strip_suffix('`')?;
            Some(key.to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_walk_objects_and_arrays() {
        let v = serde_json::json!({"a": 1, "b": {"c": [ {"d": null}, {"d": 2} ], "e": []}});
        let keys: Vec<String> = key_paths(&v).into_iter().collect();
        assert_eq!(keys, ["a", "b.c[].d", "b.e[]"]);
    }

    #[test]
    fn documented_keys_come_from_the_marked_table_only() {
        let md = "| `outside` | x |\n<!-- bench.json keys -->\n| key | meaning |\n|---|---|\n\
                  | `format` | a |\n| `figures[].id` | b |\n<!-- end bench.json keys -->\n| `after` | c |";
        assert_eq!(documented_keys(md), ["format", "figures[].id"]);
    }
}
