//! Fuzzing the parsers of the files a user hands in: IDX image and label files (gzip
//! and raw), safetensors model files, training checkpoints, the human study's results files and
//! committee files (whose members must exist and match their SHA-256).
//!
//! Each parser starts from a real file, as advmnist ships it (the MNIST test set) or writes it
//! (a model, a checkpoint, a results file), and `proptest` mutates it: byte flips, truncations,
//! insertions, removals, and edits of the format's header fields (IDX's big-endian counts and
//! sizes, behind gzip too; safetensors' header length and any value of its JSON header; any
//! value of a results or committee file's JSON). Every mutated file must be accepted, or refused with an error
//! that names the file. A panic fails the test, and proptest then shrinks the mutation to a
//! small reproducer.
//!
//! Bounded: [`CASES`] mutated files per parser, or fewer when [`BUDGET`] runs out on a busy
//! machine, from a fixed seed (so a failure reproduces); the whole file in under a minute in
//! `cargo test --release`.
//!
//! Adding a parser is one more entry in [`targets`]: a real file's bytes, a function that edits
//! its header fields, and a function that parses a path.

use advmnist::experiments::human_study::{
    load_results, subject_set, Answer, StudyDesign, SubjectResults, RESULTS_FORMAT,
};
use advmnist::models::committee::{read_committee_file, write_committee_file};
use advmnist::models::file::{load_model, save_model, ModelMeta};
use advmnist::models::lenet::{DropoutRates, LeNet};
use advmnist::train::{checkpoint, Recipe, TrainConfig, TrainState};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Mutated files tried per parser (about 25 s for all seven on 2 idle cores).
const CASES: u32 = 500;
/// Wall-time budget per parser: on a machine busy with other work, the remaining cases are
/// skipped after this, so the file stays within about a minute (the issue asks for a bounded
/// time); the cases run are always the first ones of the fixed sequence.
const BUDGET: std::time::Duration = std::time::Duration::from_secs(8);

/// One parser under test.
struct Target {
    name: &'static str,
    /// The file's name in the test's folder (its extension matters to nobody, but reads well).
    file_name: &'static str,
    /// A real, valid file.
    seed: Vec<u8>,
    /// Sets header field `field` (any number: taken modulo the format's fields) to `value`.
    edit_field: fn(&[u8], usize, &FieldValue) -> Vec<u8>,
    /// Parses the file at a path, as the command line does; the error as its message.
    parse: fn(&Path) -> Result<(), String>,
}

/// A value written into a header field: a number for binary fields, any JSON value for JSON.
#[derive(Clone, Debug)]
enum FieldValue {
    Number(u64),
    Json(Value),
}

impl FieldValue {
    fn as_u64(&self) -> u64 {
        match self {
            FieldValue::Number(n) => *n,
            FieldValue::Json(v) => v.as_u64().unwrap_or(1),
        }
    }
    fn as_json(&self) -> Value {
        match self {
            FieldValue::Number(n) => Value::from(*n),
            FieldValue::Json(v) => v.clone(),
        }
    }
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip { at: usize, mask: u8 },
    Truncate { keep: usize },
    Insert { at: usize, bytes: Vec<u8> },
    Remove { at: usize, len: usize },
    Field { field: usize, value: FieldValue },
}

fn interesting_number() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1),
        Just(2),
        Just(7),
        Just(8),
        Just(10),
        Just(27),
        Just(28),
        Just(29),
        Just(255),
        Just(256),
        Just(2051),
        Just(2049),
        Just(10_000),
        Just(60_000),
        Just(u32::MAX as u64),
        Just(1 << 31),
        Just(u64::MAX),
        Just(1 << 40),
        any::<u64>(),
        0u64..100_000,
    ]
}

fn field_value() -> impl Strategy<Value = FieldValue> {
    prop_oneof![
        3 => interesting_number().prop_map(FieldValue::Number),
        1 => interesting_number().prop_map(|n| FieldValue::Json(Value::from(-(n as i128 % (1 << 62)) as i64))),
        1 => interesting_number().prop_map(|n| FieldValue::Json(Value::from(n.to_string()))),
        1 => Just(FieldValue::Json(Value::Null)),
        1 => Just(FieldValue::Json(Value::Bool(true))),
        1 => Just(FieldValue::Json(serde_json::json!([]))),
        1 => Just(FieldValue::Json(serde_json::json!({}))),
        1 => Just(FieldValue::Json(serde_json::json!(1e308))),
        1 => Just(FieldValue::Json(serde_json::json!(0.5))),
        1 => Just(FieldValue::Json(serde_json::json!([1, 2, 3]))),
        1 => Just(FieldValue::Json(serde_json::json!([0, 4294967296u64]))),
        1 => Just(FieldValue::Json(serde_json::json!("F16"))),
        1 => Just(FieldValue::Json(serde_json::json!("I64"))),
        1 => Just(FieldValue::Json(serde_json::json!(""))),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => (any::<usize>(), 1u8..=255).prop_map(|(at, mask)| Mutation::Flip { at, mask }),
        2 => any::<usize>().prop_map(|keep| Mutation::Truncate { keep }),
        2 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        1 => (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Remove { at, len }),
        4 => (any::<usize>(), field_value()).prop_map(|(field, value)| Mutation::Field { field, value }),
    ]
}

fn apply(target: &Target, bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let len = b.len().max(1);
    match m {
        Mutation::Flip { at, mask } => {
            if !b.is_empty() {
                b[at % len] ^= mask;
            }
        }
        Mutation::Truncate { keep } => b.truncate(keep % len),
        Mutation::Insert { at, bytes } => {
            let at = at % (b.len() + 1);
            b.splice(at..at, bytes.iter().copied());
        }
        Mutation::Remove { at, len: n } => {
            let at = at % len;
            let end = (at + n).min(b.len());
            if at < end {
                b.drain(at..end);
            }
        }
        Mutation::Field { field, value } => b = (target.edit_field)(&b, *field, value),
    }
    b
}

// ---- the formats' header fields ----

/// IDX: big-endian u32 words, the magic number then one per dimension.
fn edit_idx_raw(bytes: &[u8], field: usize, value: &FieldValue) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let words = if b.len() >= 4 { 1 + b[3] as usize } else { 1 };
    let at = 4 * (field % words.clamp(1, 4));
    if b.len() >= at + 4 {
        b[at..at + 4].copy_from_slice(&(value.as_u64() as u32).to_be_bytes());
    }
    b
}

/// The same edit inside the gzip stream (a file that no longer inflates is left as it is).
fn edit_idx_gz(bytes: &[u8], field: usize, value: &FieldValue) -> Vec<u8> {
    let mut raw = Vec::new();
    if flate2::read::GzDecoder::new(bytes)
        .read_to_end(&mut raw)
        .is_err()
    {
        return bytes.to_vec();
    }
    gzip(&edit_idx_raw(&raw, field, value))
}

/// safetensors: the little-endian u64 header length, and edits of the JSON header that keep the
/// file otherwise consistent, so that they reach the checks past the format's own: a metadata
/// value replaced (format, seed, a checkpoint's iteration or recipe, ...), a tensor renamed, its
/// dtype changed to another of the same width or not, its shape permuted, flattened or changed,
/// its data offsets changed, or one of its values made NaN, inf or huge. The header is
/// re-padded and re-measured.
fn edit_safetensors(bytes: &[u8], field: usize, value: &FieldValue) -> Vec<u8> {
    let v = value.as_u64();
    let n = match bytes.get(..8) {
        Some(b) => u64::from_le_bytes(b.try_into().unwrap()) as usize,
        None => return bytes.to_vec(),
    };
    let parsed = bytes
        .get(8..8usize.saturating_add(n))
        .and_then(|h| serde_json::from_slice::<serde_json::Map<String, Value>>(h).ok());
    let Some(header) = parsed.filter(|_| !field.is_multiple_of(16)) else {
        let mut b = bytes.to_vec();
        b[..8].copy_from_slice(&v.to_le_bytes());
        return b;
    };
    edit_safetensors_header(header, bytes[8 + n..].to_vec(), field, v)
        .unwrap_or_else(|| bytes.to_vec())
}

/// [`edit_safetensors`] past the header length; `None` when an earlier mutation left nothing of
/// the expected structure to edit.
fn edit_safetensors_header(
    mut header: serde_json::Map<String, Value>,
    mut data: Vec<u8>,
    field: usize,
    v: u64,
) -> Option<Vec<u8>> {
    let mut names: Vec<String> = header.keys().cloned().collect();
    names.sort();
    let name = names.get((field / 16) % names.len().max(1))?.clone();
    if name == "__metadata__" {
        let meta = header.get_mut(&name)?.as_object_mut()?;
        let keys: Vec<String> = meta.keys().cloned().collect();
        let key = keys.get((field / 256) % keys.len().max(1))?;
        let old = meta[key].as_str().unwrap_or("").to_string();
        let new = match v % 8 {
            0 => String::new(),
            1 => "-1".into(),
            2 => v.to_string(),
            3 => "{}".into(),
            4 => format!("{old}x"),
            5 => old.replacen(|c: char| c.is_ascii_digit(), "9", 1),
            6 => old.replacen(':', ":\"x\",\"y\":", 1),
            _ => "advmnist-dae".into(),
        };
        meta.insert(key.clone(), Value::from(new));
    } else {
        let mut t = header.get(&name)?.as_object()?.clone();
        let offsets: Vec<u64> = t
            .get("data_offsets")?
            .as_array()?
            .iter()
            .map(|o| o.as_u64())
            .collect::<Option<_>>()?;
        let shape: Vec<u64> = t
            .get("shape")?
            .as_array()?
            .iter()
            .map(|d| d.as_u64())
            .collect::<Option<_>>()?;
        match (field / 256) % 6 {
            0 => {
                header.remove(&name);
                header.insert(format!("{name}{}", v % 3), Value::Object(t));
                return Some(reassemble(&header, &data));
            }
            1 => {
                let dtypes = [
                    "I32", "U32", "F16", "BF16", "F64", "I64", "BOOL", "U8", "F32",
                ];
                t.insert(
                    "dtype".into(),
                    Value::from(dtypes[v as usize % dtypes.len()]),
                );
            }
            2 => {
                let mut shape = shape;
                match v % 4 {
                    0 => shape.reverse(),
                    1 => shape = vec![shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d))?],
                    2 => shape.push(1),
                    _ => *shape.first_mut()? = v,
                }
                t.insert("shape".into(), Value::from(shape));
            }
            3 => {
                let mut o = offsets;
                *o.get_mut((v % 2) as usize)? = v / 2;
                t.insert("data_offsets".into(), Value::from(o));
            }
            _ => {
                // One f32 value of the tensor made NaN, inf, -inf or huge (but finite).
                let count = offsets.get(1)?.checked_sub(*offsets.first()?)? / 4;
                if count > 0 {
                    let at = offsets[0].checked_add(4 * ((v / 4) % count))? as usize;
                    let bad = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30][(v % 4) as usize];
                    data.get_mut(at..at.checked_add(4)?)?
                        .copy_from_slice(&bad.to_le_bytes());
                }
            }
        }
        header.insert(name, Value::Object(t));
    }
    Some(reassemble(&header, &data))
}

/// A safetensors file from its header and data.
fn reassemble(header: &serde_json::Map<String, Value>, data: &[u8]) -> Vec<u8> {
    let mut text = serde_json::to_string(header).unwrap();
    while !text.len().is_multiple_of(8) {
        text.push(' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend(text.as_bytes());
    out.extend(data);
    out
}

/// A JSON file: one value edited, mostly keeping its type so that the edit gets past the
/// parser's type checks to the format's own (numbers become other numbers, strings other
/// strings, arrays lose or repeat an element, objects lose a key or gain an unknown one), and
/// sometimes replaced by a value of another type.
fn edit_json(bytes: &[u8], field: usize, value: &FieldValue) -> Vec<u8> {
    let Ok(mut doc) = serde_json::from_slice::<Value>(bytes) else {
        return bytes.to_vec();
    };
    let v = value.as_u64();
    let edit = move |old: &Value| -> Value {
        if v.is_multiple_of(7) {
            return value.as_json();
        }
        match old {
            Value::Number(_) => match v % 5 {
                0 => Value::from(v),
                1 => Value::from(-((v % 1000) as i64) - 1),
                2 => serde_json::json!(v as f64 / 3.0),
                3 => Value::from(old.as_u64().unwrap_or(0).wrapping_add(1)),
                _ => Value::from(0),
            },
            Value::String(s) => match v % 4 {
                0 => Value::from(""),
                1 => Value::from(format!("{s}x")),
                2 => Value::from(s.chars().rev().collect::<String>()),
                _ => Value::from(v.to_string()),
            },
            Value::Array(a) if !a.is_empty() => {
                let mut a = a.clone();
                let k = v as usize % a.len();
                if v.is_multiple_of(2) {
                    a.remove(k);
                } else {
                    a.push(a[k].clone());
                }
                Value::Array(a)
            }
            Value::Object(o) if !o.is_empty() => {
                let mut o = o.clone();
                let key = o.keys().nth(v as usize % o.len()).unwrap().clone();
                if v.is_multiple_of(2) {
                    o.remove(&key);
                } else {
                    o.insert(format!("{key}_unknown"), Value::from(1));
                }
                Value::Object(o)
            }
            _ => value.as_json(),
        }
    };
    edit_json_node(&mut doc, field, &edit);
    serde_json::to_vec_pretty(&doc).unwrap()
}

/// Replaces node `k` (in pre-order, modulo the number of nodes) of a JSON document by `edit`
/// of it.
fn edit_json_node(doc: &mut Value, k: usize, edit: &dyn Fn(&Value) -> Value) {
    fn count(v: &Value) -> usize {
        1 + match v {
            Value::Array(a) => a.iter().map(count).sum(),
            Value::Object(o) => o.values().map(count).sum(),
            _ => 0,
        }
    }
    fn walk(v: &mut Value, k: &mut usize, edit: &dyn Fn(&Value) -> Value) -> bool {
        if *k == 0 {
            *v = edit(v);
            return true;
        }
        *k -= 1;
        match v {
            Value::Array(a) => a.iter_mut().any(|c| walk(c, k, edit)),
            Value::Object(o) => o.values_mut().any(|c| walk(c, k, edit)),
            _ => false,
        }
    }
    let mut k = k % count(doc);
    walk(doc, &mut k, edit);
}

// ---- the real files ----

fn gzip(raw: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(raw).unwrap();
    e.finish().unwrap()
}

fn mnist_file(name: &str) -> Vec<u8> {
    let gz = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("mnist")
            .join(name),
    )
    .unwrap();
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..])
        .read_to_end(&mut raw)
        .unwrap();
    raw
}

fn test_labels() -> &'static Vec<u8> {
    static LABELS: OnceLock<Vec<u8>> = OnceLock::new();
    LABELS.get_or_init(|| mnist_file("t10k-labels-idx1-ubyte.gz")[8..].to_vec())
}

/// The first 50 test images, as an IDX file of 50 images (the whole file would only make each
/// case slower: the parser's work is in the header and the sizes).
fn idx_images_seed() -> Vec<u8> {
    let raw = mnist_file("t10k-images-idx3-ubyte.gz");
    let mut b = raw[..16 + 50 * 784].to_vec();
    b[4..8].copy_from_slice(&50u32.to_be_bytes());
    b
}

fn lenet() -> LeNet<f32> {
    TrainConfig::lenet(DropoutRates::NONE, 1).initial_net()
}

fn model_seed() -> Vec<u8> {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("m.safetensors");
    let meta = ModelMeta {
        dropout: DropoutRates::NONE,
        seed: 1,
        iterations: 0,
        data_sha256: "0".repeat(64),
        extra: Default::default(),
    };
    save_model(&path, &lenet(), &meta).unwrap();
    std::fs::read(path).unwrap()
}

const DATA_SHA256: &str = "fuzz";

/// A committee file of two members, by absolute path, in a folder that lives as long as the
/// test binary: the fuzzed copy is written elsewhere (`fuzz`'s own folder), and must still find
/// its members, so that mutations reach the hash checks and not only "member not found".
fn committee_seed() -> Vec<u8> {
    static FOLDER: OnceLock<tempfile::TempDir> = OnceLock::new();
    let folder = FOLDER.get_or_init(|| tempfile::TempDir::new().unwrap());
    let members: Vec<PathBuf> = ["a", "b"]
        .iter()
        .map(|name| {
            let path = folder.path().join(format!("{name}.safetensors"));
            std::fs::write(&path, model_seed()).unwrap();
            path
        })
        .collect();
    let path = folder.path().join("committee.json");
    write_committee_file(&path, &members).unwrap();
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    // Absolute member paths, so that the file reads the same from any folder.
    for (entry, member) in doc["members"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .zip(&members)
    {
        entry["path"] = Value::String(member.display().to_string());
    }
    serde_json::to_vec_pretty(&doc).unwrap()
}

fn checkpoint_seed() -> Vec<u8> {
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join("m.ckpt");
    let recipe = TrainConfig::lenet(DropoutRates::NONE, 1);
    let mut state = TrainState::start(recipe.initial_net());
    state.iteration = 3;
    checkpoint::save(&path, &recipe, DATA_SHA256, &state).unwrap();
    std::fs::read(path).unwrap()
}

fn results_seed() -> Vec<u8> {
    let labels = test_labels();
    let design = StudyDesign {
        seed: 5,
        model_sha256: "0".repeat(64),
        hard_pool: (0..10u8)
            .map(|c| {
                (0..labels.len())
                    .filter(|&i| labels[i] == c)
                    .take(5)
                    .collect()
            })
            .collect(),
    };
    let set = subject_set(&design, labels, 1);
    let results = SubjectResults {
        format: RESULTS_FORMAT.into(),
        study_id: design.id(),
        study: design.clone(),
        subject: 1,
        answers: set
            .trials
            .iter()
            .enumerate()
            .map(|(k, t)| Answer {
                image: t.image,
                noise: t.noise,
                level: t.level,
                label: t.label,
                answer: (t.label as i64 + k as i64 % 3) % 10,
                response_ms: 500.0 + k as f64,
            })
            .collect(),
    };
    serde_json::to_vec_pretty(&results).unwrap()
}

fn targets() -> Vec<Target> {
    let images = idx_images_seed();
    let labels = mnist_file("t10k-labels-idx1-ubyte.gz");
    vec![
        Target {
            name: "IDX images, raw",
            file_name: "t10k-images-idx3-ubyte",
            seed: images.clone(),
            edit_field: edit_idx_raw,
            parse: |p| {
                advmnist::data::read_idx_images(p)
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        },
        Target {
            name: "IDX images, gzip",
            file_name: "t10k-images-idx3-ubyte.gz",
            seed: gzip(&images),
            edit_field: edit_idx_gz,
            parse: |p| {
                advmnist::data::read_idx_images(p)
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        },
        Target {
            name: "IDX labels, raw",
            file_name: "t10k-labels-idx1-ubyte",
            seed: labels.clone(),
            edit_field: edit_idx_raw,
            parse: |p| {
                advmnist::data::read_idx_labels(p)
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        },
        Target {
            name: "IDX labels, gzip",
            file_name: "t10k-labels-idx1-ubyte.gz",
            seed: gzip(&labels),
            edit_field: edit_idx_gz,
            parse: |p| {
                advmnist::data::read_idx_labels(p)
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        },
        Target {
            name: "model file (safetensors)",
            file_name: "m.safetensors",
            seed: model_seed(),
            edit_field: edit_safetensors,
            parse: |p| load_model(p).map(drop).map_err(|e| e.to_string()),
        },
        Target {
            name: "training checkpoint",
            file_name: "m.safetensors.ckpt",
            seed: checkpoint_seed(),
            edit_field: edit_safetensors,
            parse: |p| {
                let recipe = TrainConfig::lenet(DropoutRates::NONE, 1);
                checkpoint::load(p, &recipe, DATA_SHA256)
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        },
        Target {
            name: "human-study results",
            file_name: "results.json",
            seed: results_seed(),
            edit_field: edit_json,
            parse: |p| {
                load_results(&[p.to_path_buf()], test_labels())
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        },
        Target {
            name: "committee file",
            file_name: "committee.json",
            seed: committee_seed(),
            edit_field: edit_json,
            parse: |p| read_committee_file(p).map(drop).map_err(|e| e.to_string()),
        },
    ]
}

/// Runs one target's cases: every mutated file is accepted or refused naming the file.
fn fuzz(target: &Target) {
    let dir = tempfile::TempDir::new().unwrap();
    let path: PathBuf = dir.path().join(target.file_name);
    let shown = path.display().to_string();
    // The unmutated file must parse, or the mutations test nothing.
    std::fs::write(&path, &target.seed).unwrap();
    (target.parse)(&path)
        .unwrap_or_else(|e| panic!("{}: the seed file is refused: {e}", target.name));
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    // A fixed seed per target: the same cases every run, so a failure reproduces.
    let mut seed = [0u8; 32];
    seed[..target.name.len().min(32)]
        .copy_from_slice(&target.name.as_bytes()[..target.name.len().min(32)]);
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed));
    let started = std::time::Instant::now();
    let result = runner.run(&prop::collection::vec(mutation(), 1..4), |mutations| {
        if started.elapsed() > BUDGET {
            return Ok(());
        }
        let mut bytes = target.seed.clone();
        for m in &mutations {
            bytes = apply(target, &bytes, m);
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = (target.parse)(&path) {
            prop_assert!(
                e.contains(&shown),
                "{}: the error does not name the file {shown}: {e}",
                target.name
            );
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{}: {e}", target.name);
    }
}

#[test]
fn mutated_idx_image_files_are_refused_naming_the_file_without_a_panic() {
    for t in targets()
        .iter()
        .filter(|t| t.name.starts_with("IDX images"))
    {
        fuzz(t);
    }
}

#[test]
fn mutated_idx_label_files_are_refused_naming_the_file_without_a_panic() {
    for t in targets()
        .iter()
        .filter(|t| t.name.starts_with("IDX labels"))
    {
        fuzz(t);
    }
}

#[test]
fn mutated_model_files_are_refused_naming_the_file_without_a_panic() {
    fuzz(
        &targets()
            .into_iter()
            .find(|t| t.name.starts_with("model"))
            .unwrap(),
    );
}

#[test]
fn mutated_checkpoints_are_refused_naming_the_file_without_a_panic() {
    fuzz(
        &targets()
            .into_iter()
            .find(|t| t.name.starts_with("training"))
            .unwrap(),
    );
}

#[test]
fn mutated_human_study_results_are_refused_naming_the_file_without_a_panic() {
    fuzz(
        &targets()
            .into_iter()
            .find(|t| t.name.starts_with("human"))
            .unwrap(),
    );
}

#[test]
fn mutated_committee_files_are_refused_naming_the_file_without_a_panic() {
    fuzz(
        &targets()
            .into_iter()
            .find(|t| t.name.starts_with("committee"))
            .unwrap(),
    );
}

/// The mutations reach the parsers' checks: over the cases, some files are refused and (for
/// byte flips in pixel data or labels) some accepted, and field edits refuse files in more than
/// one way. A harness whose mutations never got past the first check would pass vacuously.
#[test]
fn the_mutations_reach_many_different_checks() {
    let targets = targets();
    let labels = targets
        .iter()
        .find(|t| t.name == "IDX labels, raw")
        .unwrap();
    let mut runner = TestRunner::new_with_rng(
        Config::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let dir = tempfile::TempDir::new().unwrap();
    let path = dir.path().join(labels.file_name);
    let mut kinds = std::collections::BTreeSet::new();
    let mut accepted = 0;
    for _ in 0..200 {
        let m = mutation().new_tree(&mut runner).unwrap().current();
        std::fs::write(&path, apply(labels, &labels.seed, &m)).unwrap();
        match (labels.parse)(&path) {
            Ok(()) => accepted += 1,
            // The message's kind: what follows the path, up to the first number.
            Err(e) => {
                let rest = e[path.display().to_string().len()..].to_string();
                kinds.insert(
                    rest.split(|c: char| c.is_ascii_digit())
                        .next()
                        .unwrap()
                        .to_string(),
                );
            }
        }
    }
    assert!(accepted > 0, "no mutated file was accepted");
    assert!(kinds.len() >= 3, "the refusals are all alike: {kinds:?}");
}
